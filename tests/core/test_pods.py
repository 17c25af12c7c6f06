"""Parsing Pods exactly as the API returns them, including garbled ones, and trusting them.

Only the hub's own pods count toward quotas, and what they cost comes from the catalog
(issue 10, items 3-5: exact names (injective scopes), trusted charges (never a number read
off a pod), no escape from a quota by a configuration change).
"""

from __future__ import annotations

import math

import pytest
from k8s_factories import node, pod

from mig_spawner.core.catalog import default_catalog
from mig_spawner.core.cluster import ADDED, ClusterState
from mig_spawner.core.pods import (
    Charge,
    Trust,
    charge_from_requests,
    effective_requests,
    is_label_value,
    label_value,
    parse_pod,
    pod_charge,
    profile_charge,
)

CATALOG = default_catalog()


MIG1 = "nvidia.com/mig-1g.10gb"


MIG3 = "nvidia.com/mig-3g.40gb"


TRUST = Trust(namespaces=frozenset({"jhub"}), hub="hub-a")


def test_only_pods_in_the_hubs_namespaces_with_its_mark_are_trusted():
    ours = pod("p", node="a", resources={MIG1: 1}, user="bob", team="vision", hub="hub-a")
    assert parse_pod(ours, TRUST, CATALOG).user == "bob"
    elsewhere = pod("p", namespace="ml", node="a", resources={MIG1: 1}, user="bob", hub="hub-a")
    other_hub = pod("q", node="a", resources={MIG1: 1}, user="bob", hub="hub-b")
    unmarked = pod("r", node="a", resources={MIG1: 1}, user="bob")
    del unmarked["metadata"]["annotations"]["mig-spawner/hub"]
    for obj in (elsewhere, other_hub, unmarked):
        info = parse_pod(obj, TRUST, CATALOG)
        assert not info.managed and info.charge is None
        assert info.requests == {MIG1: 1}  # ... but it still holds its slice


def test_foreign_pods_hold_capacity_but_never_quota():
    state = ClusterState(TRUST)
    state.apply_node_event(ADDED, node("a", mig=["1g.10gb"] * 2))
    forged = pod("x", namespace="ml", node="a", resources={MIG1: 1}, user="bob", team="vision")
    state.apply_pod_event(ADDED, forged)
    kind = next(iter(state.nodes["a"].offers))
    assert state.free(state.nodes["a"], kind) == 1
    assert state.usage("vision", "bob").servers == 0


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "-5", "1e308", "7", "", "x"])
def test_a_charge_label_is_never_believed(bad):
    obj = pod("p", node="a", resources={MIG3: 1}, user="bob", team="vision")
    obj["metadata"]["labels"]["mig-spawner/charge-compute-slices"] = bad
    obj["metadata"]["labels"]["mig-spawner/charge-memory-gb"] = bad
    assert parse_pod(obj, None, CATALOG).charge == Charge(
        3, 40
    )  # what it requests, through the catalog


@pytest.mark.parametrize(
    "requested",
    ["nan", "inf", "1g.nangb", "1g.999999gb", "0g.10gb", "8g.10gb", "7g.80gb", "", "whole-gpu"],
)
def test_a_recorded_requested_profile_is_validated(requested):
    """charge="requested": a garbled or larger-than-granted record costs what is granted."""
    annotations = {"mig-spawner/charge": "requested", "mig-spawner/requested-profile": requested}
    charge = pod_charge({MIG3: 1}, annotations, CATALOG)
    assert charge == Charge(3, 40)
    assert math.isfinite(charge.memory_gb)


def test_requested_charge_within_the_catalog_is_used():
    annotations = {"mig-spawner/charge": "requested", "mig-spawner/requested-profile": "1g.10gb"}
    assert pod_charge({MIG3: 1}, annotations, CATALOG) == Charge(1, 10)


def test_whole_and_single_strategy_gpus_are_charged_from_the_catalog():
    h100 = "NVIDIA-H100-80GB-HBM3"
    assert charge_from_requests({"nvidia.com/gpu": 1}, "whole-gpu", h100, CATALOG) == Charge(7, 80)
    # single strategy: nvidia.com/gpu is one slice of the recorded profile
    assert charge_from_requests({"nvidia.com/gpu": 1}, "1g.10gb", h100, CATALOG) == Charge(1, 10)
    # no (or a garbled) record: a whole GPU of the largest model -- more, never less
    unknown = charge_from_requests({"nvidia.com/gpu": 1}, "1g.nangb", "", CATALOG)
    assert unknown.compute_slices == 7 and unknown.memory_gb >= 80
    assert profile_charge("nan", "", CATALOG) is None and profile_charge(None, "", CATALOG) is None


def test_label_values_are_validated_by_full_match():
    assert is_label_value("bob") and is_label_value("") and is_label_value("a" * 63)
    assert not is_label_value("bob\n")  # `$` would have accepted the trailing newline
    assert not is_label_value("a" * 64) and not is_label_value("-bob")
    assert label_value("bob\n") != "bob\n" and is_label_value(label_value("bob\n"))
    assert is_label_value(label_value("x" * 500))


def test_effective_requests_count_init_containers_like_the_scheduler():
    spec = {
        "initContainers": [
            {"name": "i", "resources": {"requests": {"nvidia.com/gpu": "2"}}},
            {
                "name": "side",
                "restartPolicy": "Always",
                "resources": {"limits": {"nvidia.com/mig-1g.10gb": "1"}},
            },
        ],
        "containers": [
            {"name": "a", "resources": {"limits": {"nvidia.com/gpu": "1", "cpu": "2"}}},
            {"name": "b", "resources": {"limits": {"nvidia.com/mig-1g.10gb": 1}}},
        ],
    }
    assert effective_requests(spec) == {"nvidia.com/gpu": 2, "nvidia.com/mig-1g.10gb": 2}


def test_managed_pod_carries_user_team_and_charge():
    info = parse_pod(
        pod(
            "p",
            node="a",
            resources={"nvidia.com/mig-2g.20gb": 1},
            user="alice",
            team="vision",
            requested_profile="1g.10gb",
            charge_mode="requested",
            server_name="gpu",
        ),
        None,
        CATALOG,
    )
    assert info.key == "jhub/p" and info.node == "a" and info.active and info.managed
    assert (info.user, info.team, info.server_name) == ("alice", "vision", "gpu")
    assert info.charge == Charge(1, 10)  # charged as requested, not as granted
    unlabelled = parse_pod(
        pod("q", resources={"nvidia.com/mig-2g.20gb": 1}, user="bob"), None, CATALOG
    )
    assert unlabelled.charge == Charge(2, 20) and unlabelled.node is None
    assert not parse_pod(pod("r", node="a", phase="Succeeded"), None, CATALOG).active
    assert not parse_pod(pod("f", node="a"), None, CATALOG).managed
    with pytest.raises(ValueError):
        parse_pod({"metadata": {}}, None, CATALOG)


# ----------------------------------------------------------------------------------------
# parse_pod promised never to raise on a garbled (but named) object: a non-list where a
# list belongs raised TypeError, and a non-ASCII digit such as '²' raised ValueError.


@pytest.mark.parametrize(
    ("field", "value"), [("containers", True), ("containers", 3), ("initContainers", 7)]
)
def test_garbled_pod_containers_hold_nothing_instead_of_raising(field, value):
    obj = pod("p", node="n", resources={MIG1: 1})
    obj["spec"][field] = value
    info = parse_pod(obj, None, CATALOG)
    if field == "containers":
        assert info.requests == {}
    else:
        assert info.requests == {MIG1: 1}


def test_pod_quantity_with_a_non_ascii_digit_counts_zero():
    obj = pod("p", node="n", resources={MIG1: 1})
    obj["spec"]["containers"][0]["resources"]["limits"][MIG1] = "²"
    assert parse_pod(obj, None, CATALOG).requests == {}


def test_unix_seconds_reads_the_apis_stamps_and_nothing_else():
    from mig_spawner.core.pods import unix_seconds

    assert unix_seconds("2026-12-07T10:00:00Z") == 1796637600.0
    assert unix_seconds("2026-12-07T10:00:00") == 1796637600.0  # no zone: UTC
    assert unix_seconds("2026-12-07T11:00:00+01:00") == 1796637600.0
    assert [unix_seconds(x) for x in ("", "yesterday", None, 5)] == [None] * 4
