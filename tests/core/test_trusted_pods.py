"""Only the hub's own pods count toward quotas, and what they cost comes from the catalog.

Issue 10, items 3-5: exact names (injective scopes), trusted charges (never a number read
off a pod), no escape from a quota by a configuration change.
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


def test_orphaned_servers_count_against_the_quota_that_applies_now():
    """A team removed from team_quotas, or a group the user left: no escape."""
    state = ClusterState()
    state.apply_node_event(ADDED, node("a", mig=["1g.10gb"] * 7))
    state.apply_pod_event(ADDED, pod("p", node="a", resources={MIG1: 1}, user="bob", team="gone"))
    state.apply_pod_event(ADDED, pod("q", node="a", resources={MIG1: 1}, user="bob", team="nlp"))
    # bob is now only in vision: both servers count there...
    assert state.usage("vision", "bob", scopes_now=["vision"]).compute_slices == 2
    # ... or, in no team any more, against his personal quota
    assert state.usage("", "bob", scopes_now=[""]).compute_slices == 2
    # still in nlp: that one stays nlp's
    assert state.usage("vision", "bob", scopes_now=["vision", "nlp"]).compute_slices == 1
    # a personal server of a user who has since joined a team
    state.apply_pod_event(ADDED, pod("r", node="a", resources={MIG1: 1}, user="eve"))
    assert state.usage("vision", "eve", scopes_now=["vision"]).servers == 1
    assert state.usage("vision", "eve").servers == 0  # without scopes_now: recorded scope


def test_an_unbound_pinned_pod_holds_its_slice_without_a_reservation():
    """After a hub restart nothing remembers the reservation: the pinned pod holds it."""
    state = ClusterState()
    state.apply_node_event(ADDED, node("a", mig=["1g.10gb"]))
    state.apply_node_event(ADDED, node("b", mig=["1g.10gb"]))
    kind = next(iter(state.nodes["a"].offers))
    state.apply_pod_event(ADDED, pod("p", resources={MIG1: 1}, user="bob", pinned="a"))
    assert state.free(state.nodes["a"], kind) == 0 and state.free(state.nodes["b"], kind) == 1
    assert state.usage("", "bob").compute_slices == 1
