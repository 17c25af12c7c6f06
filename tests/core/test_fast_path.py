"""The indexed decision equals a straightforward one, on random clusters and event streams.

``decide()`` reads per-(slice type, reach) indexes, incremental quota sums and cached
chains (core/index.py, core/cluster.py). The reference below reads none of them: it
recomputes every figure from ``state.nodes``, ``state.pods`` and ``state.reservations``
by scanning, exactly as the core did before the indexes (sort reachable nodes, count what
each pod and reservation holds). Indexes are built before the events arrive, so the
test checks that the events keep them right, not only that a fresh build is right.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_properties import (
    NODE_NAMES,
    POD_NAMES,
    TEAMS,
    TIERS,
    USERS,
    gpu_node,
    pod_objects,
    quota_limits,
    request_of,
)

from mig_spawner.core import admission as adm
from mig_spawner.core.admission import SpawnRequest, admit, decide
from mig_spawner.core.chains import resolve_chain
from mig_spawner.core.cluster import ADDED, DELETED, MODIFIED, ClusterState
from mig_spawner.core.pods import Charge, label_value
from mig_spawner.core.policy import build_policy
from mig_spawner.core.quota import Usage, check_quota

POOL_LABEL = "example.com/pool"
DEDICATED_TAINT = {"key": "dedicated", "value": "gpu-pool", "effect": "NoSchedule"}
FAST_TIERS = {
    **TIERS,
    # a tier with its own reach: only pool nodes, tolerating their taint
    "pool": {
        "compute_slices": 1,
        "node_selector": {POOL_LABEL: "a"},
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
    },
}


@st.composite
def placed_node(draw, name):
    obj = draw(gpu_node(name))
    if draw(st.booleans()):
        obj["metadata"]["labels"][POOL_LABEL] = draw(st.sampled_from(["a", "b"]))
    if draw(st.booleans()):
        obj["spec"].setdefault("taints", []).append(dict(DEDICATED_TAINT))
    return obj


@st.composite
def steps(draw):
    what = draw(st.sampled_from(["node", "pod", "pod", "pod", "admit", "admit", "release"]))
    if what == "node":
        name = draw(st.sampled_from(NODE_NAMES))
        return ("node", draw(st.sampled_from([ADDED, MODIFIED, DELETED])), draw(placed_node(name)))
    if what == "pod":
        namespace, name = draw(st.sampled_from(POD_NAMES))
        return (
            "pod",
            draw(st.sampled_from([ADDED, MODIFIED, DELETED])),
            draw(pod_objects(namespace, name)),
        )
    user = draw(st.sampled_from(sorted(USERS)))
    key = draw(st.sampled_from([f"{ns}/{n}" for ns, n in POD_NAMES[:2]] + ["jhub/jupyter-c"]))
    if what == "release":
        return ("release", key, None)
    return (
        "admit",
        key,
        (user, draw(st.sampled_from(sorted(FAST_TIERS))), draw(st.integers(0, 2))),
    )


# ----------------------------------------------------------------------------- the reference


def ref_free(state: ClusterState, node, kind) -> int:
    held = 0
    for p in state.pods.values():
        if p.active and p.node == node.name:
            held += p.requests.get(kind.resource, 0)
    for r in state.reservations.values():
        if r.node == node.name and r.slice_type.resource == kind.resource:
            held += 1
    return max(node.offers.get(kind, 0) - held, 0)


def ref_usage(state: ClusterState, team: str, user: str) -> Usage:
    scope = state.scope(team, user)
    usage = Usage()
    me = label_value(user)
    holders = []
    for p in state.pods.values():
        if p.active and p.managed and state.scope(p.team, p.user) == scope:
            holders.append((p.user or "", p.server_name, p.charge or Charge(0, 0), p.profile))
    for r in state.reservations.values():
        unseen = r.key not in state.pods or r.key in state._earlier
        if unseen and state.scope(r.team, r.user) == scope:
            holders.append((r.user, r.server_name, r.charge, r.slice_type.profile))
    for holder, server, charge, profile in holders:
        usage.compute_slices += charge.compute_slices
        usage.memory_gb += charge.memory_gb
        usage.servers += 1
        if label_value(holder) == me:
            usage.user_compute_slices += charge.compute_slices
            usage.own_servers.append((server, profile))
    usage.own_servers.sort()
    return usage


def ref_chain(tier, state: ClusterState):
    def reach(kind):
        return [
            n
            for name, n in sorted(state.nodes.items())
            if kind in n.offers and n.admits(tier.node_selector, tier.tolerations) is None
        ]

    kinds = {}
    for _name, n in sorted(state.nodes.items()):
        for kind in n.offers:
            kinds.setdefault(kind, state.node_slice_type(n, kind))  # first node by name
    present = sorted(kinds.values(), key=lambda k: k.sort_key)
    return resolve_chain(tier, [k for k in present if reach(k)]), reach


def ref_decide(request: SpawnRequest, policy, state: ClusterState) -> dict:
    """(admitted, code, team, granted type, node, step, outcomes with free/total, quota)."""
    tier = policy.tier(request.tier)
    teams = policy.teams_for(frozenset(request.groups))
    if request.team is not None:
        teams = [request.team]
    elif not teams:
        teams = [""]
    chain, reach = ref_chain(tier, state)
    if not chain:
        return {"code": adm.NO_MATCHING_GPU}
    results = []
    for team in teams:
        quota = policy.quota_for(team or None)
        usage = ref_usage(state, team, request.user)
        requested = chain[0][0]
        outcomes, result = [], None
        for step, kinds in enumerate(chain):
            for kind in kinds:
                nodes = reach(kind)
                total = sum(n.offers.get(kind, 0) for n in nodes)
                free_nodes = [(ref_free(state, n, kind), n) for n in nodes if n.usable]
                free_nodes = [(f, n) for f, n in free_nodes if f > 0]
                free = sum(f for f, _ in free_nodes)
                if step > 0 and not tier.fallback:
                    outcomes.append((kind, free, total, adm.FALLBACK_DISABLED))
                    continue
                if (
                    step > 0
                    and tier.max_fallback_steps is not None
                    and step > tier.max_fallback_steps
                ):
                    outcomes.append((kind, free, total, adm.BEYOND_MAX_STEPS))
                    continue
                if not free_nodes:
                    unusable = total and not any(n.usable for n in nodes)
                    outcomes.append((kind, free, total, adm.UNUSABLE if unusable else adm.FULL))
                    continue
                charged = kind if policy.charge == "granted" else requested
                charge = Charge(charged.compute_slices, charged.memory_gb)
                check = check_quota(quota, usage, charge)
                if not check.ok:
                    outcomes.append((kind, free, total, adm.OVER_QUOTA))
                    continue
                outcomes.append((kind, free, total, adm.GRANTED))
                node = sorted(free_nodes, key=lambda fn: (-fn[0], fn[1].name))[0][1]
                result = {
                    "admitted": True,
                    "team": team,
                    "granted": kind,
                    "node": node.name,
                    "step": step,
                }
                break
            if result:
                break
        if result is None:
            blocked = any(o[3] == adm.OVER_QUOTA for o in outcomes)
            result = {
                "admitted": False,
                "team": team,
                "code": adm.QUOTA if blocked else adm.CAPACITY,
            }
        result["outcomes"] = [(k.label, f, t, o) for k, f, t, o in outcomes]
        results.append(result)
    chosen = next((r for r in results if r["admitted"]), None)
    if chosen is None:
        chosen = next((r for r in results if r["code"] == adm.CAPACITY), results[0])
    return chosen


def fast_view(d) -> dict:
    if d.code == adm.NO_MATCHING_GPU:
        return {"code": d.code}
    out = {
        "admitted": d.admitted,
        "team": d.team or "",
        "outcomes": [(c.slice_type.label, c.free, c.total, c.outcome) for c in d.candidates],
    }
    if d.admitted:
        out.update(granted=d.granted, node=d.node, step=d.step)
    else:
        out["code"] = d.code
    return out


@settings(max_examples=150, deadline=None)
@given(
    quotas=st.fixed_dictionaries({team: quota_limits for team in TEAMS}),
    charge=st.sampled_from(["granted", "requested"]),
    nodes=st.lists(st.sampled_from(NODE_NAMES), min_size=1, max_size=3, unique=True),
    data=st.data(),
    stream=st.lists(steps(), max_size=30),
)
def test_the_indexed_decision_equals_a_straightforward_one(quotas, charge, nodes, data, stream):
    policy = build_policy(tiers=FAST_TIERS, team_quotas=quotas, charge=charge)
    state = ClusterState()
    for name in nodes:
        state.apply_node_event(ADDED, data.draw(placed_node(name)))

    def compare(user, tier, pick):
        req = request_of(user, tier, pick)
        if policy.tier(tier).visible_to(frozenset(req.groups)) and (
            req.team is None or req.team in policy.teams_for(frozenset(req.groups))
        ):
            assert fast_view(decide(req, policy, state)) == ref_decide(req, policy, state)

    for tier in FAST_TIERS:  # build every index before the events
        compare("alice", tier, 0)
    for what, a, b in stream:
        if what == "node":
            state.apply_node_event(a, b)
        elif what == "pod":
            state.apply_pod_event(a, b)
        elif what == "release":
            state.release(a)
        else:
            user, tier, pick = b
            req = request_of(user, tier, pick)
            compare(user, tier, pick)
            if policy.tier(tier).visible_to(frozenset(req.groups)):
                admit(req, policy, state, pod_key=a)
        for user in ("alice", "carol", "erin@example.com"):
            for team in ("", *TEAMS):
                fast, ref = (
                    state.usage(team, label_value(user)),
                    ref_usage(state, team, label_value(user)),
                )
                assert (
                    fast.compute_slices,
                    fast.servers,
                    fast.user_compute_slices,
                    fast.own_servers,
                ) == (ref.compute_slices, ref.servers, ref.user_compute_slices, ref.own_servers)
                assert abs(fast.memory_gb - ref.memory_gb) < 1e-9
    for tier in FAST_TIERS:
        for user in sorted(USERS):
            compare(user, tier, 0)
