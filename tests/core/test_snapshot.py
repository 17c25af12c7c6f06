"""The cache and a decision's snapshot: consistent reads, assume/forget, value-keyed caches."""

import gc

import pytest
from k8s_factories import node, pod

from mig_spawner.core.admission import SpawnRequest, admit, chain_rows, decide, reservation_for
from mig_spawner.core.catalog import default_catalog
from mig_spawner.core.chains import tier_chain
from mig_spawner.core.cluster import ADDED, ClusterState
from mig_spawner.core.policy import build_policy
from mig_spawner.core.snapshot import StaleSnapshot

MIG1 = "nvidia.com/mig-1g.10gb"
TIERS = {
    "nb": {"display_name": "1g", "compute_slices": 1},
    "big": {"display_name": "2g", "compute_slices": 2},
}


@pytest.fixture
def cache():
    c = ClusterState(catalog=default_catalog())
    c.apply_node_event(ADDED, node("a", mig=["1g.10gb"] * 2 + ["2g.20gb"]))
    return c


def test_a_snapshot_reads_one_version_and_refuses_reads_after_the_cache_moved(cache):
    view = cache.snapshot()
    assert set(view.nodes) == {"a"} and view.current
    with pytest.raises(TypeError):
        view.nodes["b"] = None  # read-only
    cache.apply_pod_event(ADDED, pod("x", node="a", resources={MIG1: 1}))
    assert not view.current
    with pytest.raises(StaleSnapshot, match="moved from version"):
        view.usage("", "bob")
    assert cache.snapshot().usage("", "bob").servers == 0  # a new snapshot reads again


def test_a_decision_on_a_snapshot_is_the_decision_on_the_cache(cache):
    policy = build_policy(tiers=TIERS)
    request = SpawnRequest(user="bob", tier="nb")
    assert decide(request, policy, cache.snapshot()) == decide(request, policy, cache)


def test_assume_refuses_a_decision_made_on_a_snapshot_the_cache_has_left(cache):
    policy = build_policy(tiers=TIERS)
    request = SpawnRequest(user="bob", tier="nb")
    view = cache.snapshot()
    decision = decide(request, policy, view)
    cache.apply_pod_event(ADDED, pod("x", node="a", resources={MIG1: 2}))  # takes both 1g
    with pytest.raises(StaleSnapshot):
        cache.assume(reservation_for(decision, request, "jhub/bob"), seen=view)
    assert cache.reservations == {}
    # admit() decides on a fresh snapshot: it sees the pod and falls back to 2g
    decision = admit(request, policy, cache, pod_key="jhub/bob")
    assert decision.granted.profile == "2g.20gb" and list(cache.reservations) == ["jhub/bob"]
    assert cache.forget("jhub/bob") and not cache.forget("jhub/bob")


def test_equal_tiers_share_a_cache_entry_and_a_changed_tier_does_not(cache):
    one = build_policy(tiers=TIERS).tiers["nb"]
    two = build_policy(tiers=TIERS).tiers["nb"]  # built again: equal, not identical
    assert one is not two and one == two and hash(one) == hash(two)
    assert tier_chain(two, cache.snapshot()) is tier_chain(one, cache.snapshot())
    view = cache.snapshot()
    assert chain_rows(two, view) is chain_rows(one, view)
    capped = build_policy(tiers={"nb": {**TIERS["nb"], "fallback": False}}).tiers["nb"]
    assert capped != one
    assert [[k.profile for k in s] for s in tier_chain(capped, cache.snapshot())] == [["1g.10gb"]]


def test_a_new_tier_never_reads_a_dead_tiers_entry(cache):
    """Keyed by id(), a new tier that reuses a freed object's address could hit its entry."""
    for ceiling in (7, 1, 7, 1):
        tier = build_policy(tiers={"nb": {**TIERS["nb"], "max_compute_slices": ceiling}}).tiers[
            "nb"
        ]
        profiles = [k.profile for step in tier_chain(tier, cache.snapshot()) for k in step]
        assert profiles == (["1g.10gb", "2g.20gb"] if ceiling == 7 else ["1g.10gb"])
        del tier
        gc.collect()


def test_a_policy_is_a_value_in_which_the_order_of_tiers_counts():
    forward = build_policy(tiers=TIERS)
    again = build_policy(tiers=dict(TIERS))
    backward = build_policy(tiers=dict(reversed(list(TIERS.items()))))
    assert forward == again and hash(forward) == hash(again)
    assert forward != backward  # the form lists tiers in this order


def test_the_cache_reads_pods_through_the_catalog_it_was_given():
    """A whole GPU of an unknown model is charged the largest GPU of *that* catalog."""
    from mig_spawner.core.catalog import Catalog

    full = default_catalog()
    small = Catalog(m for m in full if m.key == "a100-40gb")
    charged = {}
    for name, catalog in (("full", full), ("small", small)):
        cache = ClusterState(catalog=catalog)
        assert cache.catalog is catalog
        cache.apply_pod_event(ADDED, pod("p", resources={"nvidia.com/gpu": 1}, user="bob"))
        charged[name] = cache.pods["jhub/p"].charge
    assert charged["small"].memory_gb == 40
    assert charged["full"].memory_gb > 40
    assert ClusterState().catalog == full  # the shipped one unless the shell passes another
