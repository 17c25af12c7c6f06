"""Regression tests for bugs found in the core while building the CLI and property tests."""

from __future__ import annotations

import pytest
from k8s_factories import node, pod

from mig_spawner.cluster import ADDED, ClusterState
from mig_spawner.nodes import parse_node
from mig_spawner.pods import parse_pod

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
    info = parse_node(obj)
    assert any(problem in p for p in info.problems), info.problems
    # fail safe: garbled taints block, garbled conditions are not Ready
    if path[-1] == "taints":
        assert info.admits({}, ()) is not None
    if path[-1] == "conditions":
        assert not info.ready


def test_gfd_label_with_a_non_ascii_digit_is_ignored():
    obj = node("n", mig=["1g.10gb"])
    obj["metadata"]["labels"]["nvidia.com/mig-1g.10gb.multiprocessors"] = "¹⁶"
    info = parse_node(obj)
    ((kind, count),) = info.offers.items()
    assert count == 1 and kind.sm_count == 16  # falls back to the catalog


@pytest.mark.parametrize(
    ("field", "value"), [("containers", True), ("containers", 3), ("initContainers", 7)]
)
def test_garbled_pod_containers_hold_nothing_instead_of_raising(field, value):
    obj = pod("p", node="n", resources={MIG1: 1})
    obj["spec"][field] = value
    info = parse_pod(obj)
    if field == "containers":
        assert info.requests == {}
    else:
        assert info.requests == {MIG1: 1}


def test_pod_quantity_with_a_non_ascii_digit_counts_zero():
    obj = pod("p", node="n", resources={MIG1: 1})
    obj["spec"]["containers"][0]["resources"]["limits"][MIG1] = "²"
    assert parse_pod(obj).requests == {}


def test_one_garbled_node_does_not_abort_a_relist():
    bad = node("bad", mig=["1g.10gb"])
    bad["spec"]["taints"] = 5
    state = ClusterState()
    problems = state.replace_nodes([node("good", mig=["1g.10gb"] * 3), bad])
    assert problems == [] and set(state.nodes) == {"good", "bad"}
    assert state.nodes["bad"].problems == ("spec.taints is not a list",)
    state.apply_pod_event(ADDED, {"metadata": {"name": "p"}, "spec": {"containers": 1}})
