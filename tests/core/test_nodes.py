"""Parsing Nodes exactly as the API returns them, including garbled ones."""

from __future__ import annotations

import pytest
from k8s_factories import A100_40, H100, node

from mig_spawner.core.catalog import WHOLE_GPU, default_catalog
from mig_spawner.core.nodes import Taint, parse_node, tolerates

CATALOG = default_catalog()


def offers(info):
    return {(k.strategy, k.profile): n for k, n in info.offers.items()}


def test_mixed_node_offers_each_profile_with_node_memory_labels():
    info = parse_node(
        node("a", mig=["1g.10gb"] * 2 + ["2g.20gb", "3g.40gb"], whole_gpus=1), CATALOG
    )
    assert offers(info) == {
        ("mixed", "1g.10gb"): 2,
        ("mixed", "2g.20gb"): 1,
        ("mixed", "3g.40gb"): 1,
        ("whole", WHOLE_GPU): 1,
    }
    three = next(k for k in info.offers if k.profile == "3g.40gb")
    assert three.memory_mib == 40320  # the node's label wins over any catalog figure
    assert three.resource == "nvidia.com/mig-3g.40gb"
    assert three.node_selector == {"nvidia.com/gpu.product": H100}
    assert three.compute_slices == 3 and three.memory_gb == 40
    assert info.usable and not info.problems


def test_single_strategy_node_is_one_profile_behind_nvidia_gpu():
    info = parse_node(node("s", strategy="single", mig=["1g.10gb"] * 7), CATALOG)
    ((kind, n),) = info.offers.items()
    assert n == 7 and kind.strategy == "single" and kind.profile == "1g.10gb"
    assert kind.resource == "nvidia.com/gpu"
    assert kind.product == H100
    assert kind.node_selector == {"nvidia.com/gpu.product": f"{H100}-MIG-1g.10gb"}


def test_single_strategy_all_disabled_offers_whole_gpus():
    info = parse_node(node("w", strategy="single", whole_gpus=8), CATALOG)
    ((kind, n),) = info.offers.items()
    assert (kind.strategy, kind.profile, n) == ("whole", WHOLE_GPU, 8)
    assert kind.compute_slices == 7 and kind.memory_gb == 80


def test_non_mig_node_offers_whole_gpus():
    info = parse_node(node("plain", A100_40, strategy="none", whole_gpus=4), CATALOG)
    ((kind, n),) = info.offers.items()
    assert kind.is_whole_gpu and n == 4 and kind.memory_gb == 40


def test_unknown_product_and_profile_still_work_from_the_name():
    info = parse_node(node("x", "NVIDIA-Future-GPU-300GB", mig=["2g.75gb"]), CATALOG)
    ((kind, n),) = info.offers.items()
    assert (kind.profile, kind.compute_slices, kind.memory_gb, n) == ("2g.75gb", 2, 75, 1)


def test_cordoned_notready_and_tainted_nodes():
    assert not parse_node(node("c", mig=["1g.10gb"], unschedulable=True), CATALOG).usable
    assert (
        parse_node(node("c", mig=["1g.10gb"], unschedulable=True), CATALOG).why_unusable()
        == "cordoned"
    )
    assert parse_node(node("n", mig=["1g.10gb"], ready=False), CATALOG).why_unusable() == "NotReady"
    tainted = parse_node(
        node("t", mig=["1g.10gb"], taints=[{"key": "gpu", "value": "x", "effect": "NoSchedule"}]),
        CATALOG,
    )
    assert "untolerated taint gpu=x:NoSchedule" in tainted.admits({}, [])
    assert tainted.admits({}, [{"key": "gpu", "operator": "Exists"}]) is None
    assert tainted.admits({"pool": "a"}, [{"operator": "Exists"}]) == "lacks label pool=a"
    soft = parse_node(
        node(
            "p", mig=["1g.10gb"], taints=[{"key": "k", "value": "", "effect": "PreferNoSchedule"}]
        ),
        CATALOG,
    )
    assert soft.admits({}, []) is None


def test_toleration_matching_rules():
    taint = Taint("gpu", "h100", "NoSchedule")
    assert tolerates([{"key": "gpu", "value": "h100"}], taint)
    assert not tolerates([{"key": "gpu", "value": "a100"}], taint)
    assert not tolerates([{"key": "gpu", "operator": "Exists", "effect": "NoExecute"}], taint)
    assert tolerates([{"operator": "Exists"}], taint)


def test_garbled_node_keeps_what_makes_sense_and_lists_problems():
    obj = node("g", mig=["1g.10gb"] * 3)
    obj["status"]["allocatable"]["nvidia.com/mig-2g.20gb"] = "lots"
    obj["status"]["allocatable"]["nvidia.com/mig-weird"] = "1"
    obj["spec"]["taints"] = ["not-a-taint"]
    info = parse_node(obj, CATALOG)
    assert offers(info) == {("mixed", "1g.10gb"): 3}
    assert any("'lots' is not a whole count" in p for p in info.problems)
    assert any("mig-weird" in p for p in info.problems)
    assert info.admits({}, []) is not None  # a malformed taint blocks rather than admits
    info = parse_node(
        {"metadata": {"name": "z", "labels": "oops"}, "status": {"allocatable": 3}}, CATALOG
    )
    assert info.offers == {} and len(info.problems) == 2 and not info.ready
    with pytest.raises(ValueError, match=r"metadata\.name"):
        parse_node({"kind": "Node"}, CATALOG)
    with pytest.raises(ValueError):
        parse_node("garbage", CATALOG)


def test_invalid_mig_layout_offers_nothing():
    obj = node("bad", strategy="single", mig=["1g.10gb"])
    obj["metadata"]["labels"]["nvidia.com/gpu.product"] = f"{H100}-MIG-INVALID"
    info = parse_node(obj, CATALOG)
    assert info.offers == {} and "invalid MIG layout" in info.problems[0]


MIG1 = "nvidia.com/mig-1g.10gb"


# ----------------------------------------------------------------------------------------
# parse_node / parse_pod promised never to raise on a garbled (but named) object; a
# non-list where a list belongs raised TypeError, and a non-ASCII digit such as '²'
# (str.isdigit() is true, int() fails) raised ValueError -- which made a relist or the
# whole `explain` fail on one bad object.


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("spec", "taints"), 5, "spec.taints is not a list"),
        (("spec", "taints"), {"key": "gpu"}, "spec.taints is not a list"),
        (("status", "conditions"), True, "status.conditions is not a list"),
        (("status", "allocatable", MIG1), "²", "is not a whole count"),
    ],
)
def test_garbled_node_fields_are_problems_not_exceptions(path, value, problem):
    obj = node("n", mig=["1g.10gb"] * 2)
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    info = parse_node(obj, CATALOG)
    assert any(problem in p for p in info.problems), info.problems
    # fail safe: garbled taints block, garbled conditions are not Ready
    if path[-1] == "taints":
        assert info.admits({}, ()) is not None
    if path[-1] == "conditions":
        assert not info.ready


def test_gfd_label_with_a_non_ascii_digit_is_ignored():
    obj = node("n", mig=["1g.10gb"])
    obj["metadata"]["labels"]["nvidia.com/mig-1g.10gb.multiprocessors"] = "¹⁶"
    info = parse_node(obj, CATALOG)
    ((kind, count),) = info.offers.items()
    assert count == 1 and kind.sm_count == 16  # falls back to the catalog
