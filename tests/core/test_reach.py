"""core/reach.py: tiers' reaches, slot coverage, narrowness, and the grant that keeps narrow
tiers servable (issue 20 item 9), checked against straightforward scans."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st
from k8s_factories import node, pod

from mig_spawner.core import reach
from mig_spawner.core.admission import SpawnRequest, decide
from mig_spawner.core.cluster import ADDED, DELETED, MODIFIED, ClusterState
from mig_spawner.core.policy import build_policy

POOL = {"example.com/pool": "research"}
TAINT = {"key": "dedicated", "value": "yes", "effect": "NoSchedule"}
TOLERATE = [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]
R1G = "nvidia.com/mig-1g.10gb"
R2G = "nvidia.com/mig-2g.20gb"
R3G = "nvidia.com/mig-3g.40gb"

TIERS = {
    "open": {"display_name": "1g", "compute_slices": 1, "max_compute_slices": 3},
    "strict": {"display_name": "1g strict", "compute_slices": 1, "fallback": False},
    "pool": {"display_name": "pool", "compute_slices": 1, "node_selector": POOL},
    "tainted": {"display_name": "tainted", "compute_slices": 2, "tolerations": TOLERATE},
}


def state_of(*nodes):
    state = ClusterState()
    for n in nodes:
        state.apply_node_event(ADDED, n)
    return state


def cluster():
    return state_of(
        node("a", mig=["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]),
        node("p", mig=["1g.10gb"] * 7, labels=POOL),
        node("t", mig=["2g.20gb"] * 3, taints=[TAINT]),
    )


def test_a_tiers_reach_is_its_usable_chain_on_the_nodes_it_admits():
    policy = build_policy(tiers=TIERS)
    state = cluster()
    assert reach.tier_reach(policy.tier("open"), state) == {
        ("a", R1G),
        ("a", R2G),
        ("a", R3G),
        ("p", R1G),
    }  # "t" is tainted against it
    # no fallback: the first step only
    assert reach.tier_reach(policy.tier("strict"), state) == {("a", R1G), ("p", R1G)}
    assert reach.tier_reach(policy.tier("pool"), state) == {("p", R1G)}
    assert reach.tier_reach(policy.tier("tainted"), state) == {
        ("a", R2G),
        ("a", R3G),
        ("t", R2G),
    }


def test_coverage_counts_the_tiers_reaching_each_slot():
    policy = build_policy(tiers=TIERS)
    cover = reach.coverage(policy, cluster())
    assert cover[("p", R1G)] == 3  # open, strict, pool
    assert cover[("a", R1G)] == 2  # open, strict
    assert cover[("a", R2G)] == 2  # open, tainted
    assert cover[("t", R2G)] == 1  # tainted only
    assert ("t", R1G) not in cover


def test_narrowness_is_the_slices_a_tier_can_reach_and_orders_the_lines():
    policy = build_policy(tiers=TIERS)
    state = cluster()
    narrow = reach.narrowness(policy, state)
    assert dict(narrow) == {"open": 11, "strict": 9, "pool": 7, "tainted": 5}
    assert reach.serve_order(policy, state, ["open", "pool", "strict"]) == [
        "pool",
        "strict",
        "open",
    ]
    # equal narrowness: the admin's order; unknown slugs last
    same = build_policy(tiers={"x": TIERS["strict"], "y": TIERS["strict"]})
    assert reach.serve_order(same, state, ["gone", "y", "x"]) == ["x", "y", "gone"]


def test_reaches_follow_node_events_and_pod_events_change_nothing():
    policy = build_policy(tiers=TIERS)
    state = cluster()
    first = reach.coverage(policy, state)
    busy = pod("job", namespace="ml", node="p", resources={R1G: 1})
    state.apply_pod_event(ADDED, busy)
    assert reach.coverage(policy, state) is first  # cached per nodes version
    # an equal policy built again is the same cache key (by value, never id())
    assert reach.coverage(build_policy(tiers=TIERS), state) is first
    # "p" loses its pool label: the pool tier reaches nothing any more
    state.apply_node_event(MODIFIED, node("p", mig=["1g.10gb"] * 7))
    assert reach.tier_reach(policy.tier("pool"), state) == frozenset()
    assert reach.coverage(policy, state)[("p", R1G)] == 2
    assert reach.narrowness(policy, state)["pool"] == 0


def test_the_grant_prefers_the_node_fewest_other_tiers_reach():
    policy = build_policy(tiers=TIERS)
    state = cluster()
    d = decide(SpawnRequest(user="u", tier="open"), policy, state)
    assert d.admitted and d.granted.profile == "1g.10gb"
    assert d.node == "a"  # 2 tiers reach a's 1g, 3 reach p's (which has more free)
    # the tainted tier: t (only itself) before a (open too), though both have 2g free
    assert decide(SpawnRequest(user="u", tier="tainted"), policy, state).node == "t"


# ----------------------------------------------------------------- the index vs a scan

NAMES = ["n1", "n2", "n3", "n4", "n5"]
LAYOUTS = [
    ["1g.10gb"] * 7,
    ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"],
    ["2g.20gb", "2g.20gb", "2g.20gb"],
    ["3g.40gb", "3g.40gb"],
]


@st.composite
def any_node(draw, name):
    labels = POOL if draw(st.booleans()) else {}
    taints = [dict(TAINT)] if draw(st.booleans()) else None
    return node(
        name,
        mig=draw(st.sampled_from(LAYOUTS)),
        labels=labels,
        taints=taints,
        unschedulable=draw(st.integers(0, 5)) == 0,
    )


@st.composite
def events(draw):
    name = draw(st.sampled_from(NAMES))
    if draw(st.booleans()):
        return ("node", draw(st.sampled_from([ADDED, MODIFIED, DELETED])), draw(any_node(name)))
    resource = draw(st.sampled_from([R1G, R2G, R3G]))
    job = pod(f"job-{draw(st.integers(0, 6))}", namespace="ml", node=name, resources={resource: 1})
    return ("pod", draw(st.sampled_from([ADDED, DELETED])), job)


def scan_grant(policy, tier, kind, state, exclude=frozenset()):
    """The rule, straightforwardly: the free usable reachable node with the fewest tiers
    reaching the slot, then the most free, then by name."""
    cover = reach.coverage(policy, state)
    best = None
    for n in state.nodes.values():
        if n.name in exclude or not n.usable or kind not in n.offers:
            continue
        if n.admits(tier.node_selector, tier.tolerations) is not None:
            continue
        free = state.free(n, kind)
        if free > 0:
            key = (cover.get((n.name, kind.resource), 0), -free, n.name)
            best = key if best is None or key < best else best
    return best[2] if best else None


@settings(max_examples=80, deadline=None)
@given(data=st.data(), stream=st.lists(events(), min_size=5, max_size=30))
def test_the_indexed_grant_equals_a_scan_of_coverage(data, stream):
    policy = build_policy(tiers=TIERS)
    state = ClusterState()
    for name in NAMES[:3]:
        state.apply_node_event(ADDED, data.draw(any_node(name)))

    def check():
        for tier in policy.tiers.values():
            for kind in state.slice_types():
                exclude = frozenset(data.draw(st.sets(st.sampled_from(NAMES), max_size=1)))
                got = reach.grant_node(tier, kind, policy, state, exclude)
                assert got == scan_grant(policy, tier, kind, state, exclude), (tier.slug, kind)

    check()  # builds the partitions; the events below must keep them right
    for what, event_type, obj in stream:
        if what == "node":
            state.apply_node_event(event_type, copy.deepcopy(obj))
        else:
            state.apply_pod_event(event_type, obj)
        check()
