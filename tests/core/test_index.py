"""The indexed decision equals a straightforward one, on random clusters and event streams.

``decide()`` reads per-(slice type, reach) indexes, incremental quota sums and cached
chains (core/index.py, core/cluster.py). The reference below reads none of them: it
recomputes every figure from ``state.nodes``, ``state.pods`` and ``state.reservations`` by
scanning, exactly as the core did before the indexes (sort reachable nodes, count what
each pod and reservation holds; grant on a node the fewest tiers reach, issue 20 item 9),
under issue 10's rules: a pod holds its slice on its slot (bound node, else the node it is
pinned to), only the hub's own pods count toward quotas, a user's servers under scopes
that no longer apply count against the quota that applies now, and a retry grants on no
node it avoids. Indexes are built before the events arrive, so the test checks that the
events keep them right (also when node events move or drop reservations), not only that a
fresh build is right.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from k8s_factories import node, pod
from k8s_strategies import (
    NODE_NAMES,
    POD_NAMES,
    RESOURCES,
    TEAMS,
    TIERS,
    USERS,
    gpu_node,
    quota_limits,
    request_of,
)

from mig_spawner.core import admission as adm
from mig_spawner.core.admission import SpawnRequest, admit, decide
from mig_spawner.core.chains import resolve_chain
from mig_spawner.core.cluster import ADDED, DELETED, MODIFIED, ClusterState
from mig_spawner.core.pods import TERMINAL_PHASES, Charge, Trust
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
def pod_objects(draw, namespace, name):
    """Pods as issue 10 sees them: the hub's own (maybe pinned and unbound, maybe under a
    team the user is no longer in), another hub's in the same namespace, other workloads."""
    ours = namespace == "jhub"
    user = draw(st.sampled_from(sorted(USERS)))
    node = draw(st.sampled_from([None, *NODE_NAMES, "gone-node"]))
    pinned = draw(st.sampled_from(["", *NODE_NAMES])) if node is None else ""
    return pod(
        name,
        namespace=namespace,
        node=node,
        resources=draw(st.dictionaries(st.sampled_from(RESOURCES), st.integers(1, 2), max_size=2)),
        phase=draw(st.sampled_from([None, "Pending", "Running", *TERMINAL_PHASES])),
        user=user if ours else None,
        # "interns" has no quota and "vision" is not every user's: a scope that no longer applies
        team=draw(st.sampled_from([None, *USERS[user], "interns", "vision"])) if ours else None,
        requested_profile=draw(st.sampled_from(["", "1g.10gb", "3g.40gb"])) if ours else "",
        charge_mode=draw(st.sampled_from(["granted", "requested"])),
        server_name=draw(st.sampled_from(["", "gpu"])),
        pinned=pinned,
        hub=draw(st.sampled_from(["jupyterhub", "jupyterhub", "other-hub"])),
    )


@st.composite
def steps(draw):
    what = draw(
        st.sampled_from(["node", "cordon", "pod", "pod", "pod", "admit", "admit", "release"])
    )
    if what == "cordon":  # an existing node cordoned: its reservations move or are dropped
        return ("cordon", draw(st.sampled_from(NODE_NAMES)), None)
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
    avoid = draw(st.frozensets(st.sampled_from(NODE_NAMES), max_size=2))
    return (
        "admit",
        key,
        (user, draw(st.sampled_from(sorted(FAST_TIERS))), draw(st.integers(0, 2)), avoid),
    )


# ----------------------------------------------------------------------------- the reference


def ref_free(state: ClusterState, node, kind) -> int:
    held = 0
    for p in state.pods.values():
        # bound there, or created unbound and pinned there: it can only ever land there
        if p.active and (p.node or p.pinned) == node.name:
            held += p.requests.get(kind.resource, 0)
    for r in state.reservations.values():
        if r.node == node.name and r.slice_type.resource == kind.resource:
            held += 1
    return max(node.offers.get(kind, 0) - held, 0)


def ref_usage(state: ClusterState, team: str, user: str, scopes_now=None) -> Usage:
    scope = state.scope(team, user)
    usage = Usage()
    holders = []
    for p in state.pods.values():
        if not (p.active and p.managed):
            continue
        elsewhere = scopes_now is not None and p.user == user and p.team not in scopes_now
        if state.scope(p.team, p.user) == scope or elsewhere:
            holders.append((p.user or "", p.server_name, p.charge or Charge(0, 0), p.profile))
    for r in state.reservations.values():
        unseen = r.key not in state.pods or r.key in state._earlier
        if unseen and state.scope(r.team, r.user) == scope:
            holders.append((r.user, r.server_name, r.charge, r.slice_type.profile))
    for holder, server, charge, profile in holders:
        usage.compute_slices += charge.compute_slices
        usage.memory_gb += charge.memory_gb
        usage.servers += 1
        if holder == user:
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


def ref_cover(policy, state: ClusterState, node, kind) -> int:
    """How many of the policy's tiers could be granted ``kind`` on ``node`` (issue 20 item 9)."""
    count = 0
    for tier in policy.tiers.values():
        chain, _ = ref_chain(tier, state)
        usable = [
            k
            for step, kinds in enumerate(chain)
            if step == 0
            or (
                tier.fallback
                and (tier.max_fallback_steps is None or step <= tier.max_fallback_steps)
            )
            for k in kinds
        ]
        if kind in usable and node.admits(tier.node_selector, tier.tolerations) is None:
            count += 1
    return count


def ref_decide(request: SpawnRequest, policy, state: ClusterState) -> dict:
    """(admitted, code, team, granted type, node, step, outcomes with free/total, quota)."""
    tier = policy.tier(request.tier)
    teams = policy.teams_for(frozenset(request.groups))
    if request.team is not None:
        teams = [request.team]
    elif not teams:
        teams = [""]
    scopes_now = tuple(policy.teams_for(frozenset(request.groups))) or ("",)
    chain, reach = ref_chain(tier, state)
    if not chain:
        return {"code": adm.NO_MATCHING_GPU}
    results = []
    for team in teams:
        quota = policy.quota_for(team or None)
        usage = ref_usage(state, team, request.user, scopes_now)
        requested = chain[0][0]
        outcomes, result = [], None
        for step, kinds in enumerate(chain):
            for kind in kinds:
                nodes = reach(kind)
                total = sum(n.offers.get(kind, 0) for n in nodes)
                free_nodes = [
                    (ref_free(state, n, kind), n)
                    for n in nodes
                    if n.usable and n.name not in request.avoid_nodes
                ]
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
                # the node the fewest tiers reach for this type; then most free, by name
                node = sorted(
                    free_nodes,
                    key=lambda fn, k=kind: (ref_cover(policy, state, fn[1], k), -fn[0], fn[1].name),
                )[0][1]
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
    stream=st.lists(steps(), min_size=10, max_size=40),
)
def test_the_indexed_decision_equals_a_straightforward_one(quotas, charge, nodes, data, stream):
    policy = build_policy(tiers=FAST_TIERS, team_quotas=quotas, charge=charge)
    state = ClusterState(Trust(namespaces=frozenset({"jhub"}), hub="jupyterhub"))
    objs = {}
    for name in nodes:
        objs[name] = data.draw(placed_node(name))
        state.apply_node_event(ADDED, objs[name])

    def compare(user, tier, pick, avoid=frozenset()):
        req = replace(request_of(user, tier, pick), avoid_nodes=avoid)
        if policy.tier(tier).visible_to(frozenset(req.groups)) and (
            req.team is None or req.team in policy.teams_for(frozenset(req.groups))
        ):
            assert fast_view(decide(req, policy, state)) == ref_decide(req, policy, state)

    for tier in FAST_TIERS:  # build every index before the events
        compare("alice", tier, 0)
    for what, a, b in stream:
        if what == "node":
            state.apply_node_event(a, b)
            objs.pop(b["metadata"]["name"], None)
            if a != DELETED:
                objs[b["metadata"]["name"]] = b
        elif what == "cordon":
            if a in objs:
                objs[a] = copy.deepcopy(objs[a])
                objs[a]["spec"]["unschedulable"] = True
                state.apply_node_event(MODIFIED, objs[a])
        elif what == "pod":
            state.apply_pod_event(a, b)
        elif what == "release":
            state.forget(a)
        else:
            user, tier, pick, avoid = b
            req = replace(request_of(user, tier, pick), avoid_nodes=avoid)
            compare(user, tier, pick, avoid)
            if policy.tier(tier).visible_to(frozenset(req.groups)):
                admit(req, policy, state, pod_key=a)
        for tier in FAST_TIERS:  # after every step: node events move reservations too
            compare("carol", tier, 0)
        for user in ("alice", "carol", "erin@example.com", "frank"):
            now = tuple(policy.teams_for(frozenset(USERS[user]))) or ("",)
            for team, scopes in itertools.product(("", *TEAMS), (None, now)):
                fast, ref = (
                    state.usage(team, user, scopes),
                    ref_usage(state, team, user, scopes),
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


def test_a_reservation_moved_off_a_cordoned_node_takes_its_slice_in_the_index():
    """A cordon moves a reservation to another node: the index's free counts follow."""
    policy = build_policy(tiers=FAST_TIERS)
    state = ClusterState(Trust(namespaces=frozenset({"jhub"}), hub="jupyterhub"))
    objs = {name: node(name, mig=["1g.10gb"] * 7, strategy="mixed") for name in NODE_NAMES[:2]}
    for obj in objs.values():
        state.apply_node_event(ADDED, obj)
    req = request_of("alice", "strict", 0)
    assert decide(req, policy, state).node == "gpu-0"  # builds the index; tie: by name
    admit(req, policy, state, pod_key="jhub/jupyter-a")
    objs["gpu-0"]["spec"]["unschedulable"] = True
    state.apply_node_event(MODIFIED, objs["gpu-0"])
    assert state.reservations["jhub/jupyter-a"].node == "gpu-1"

    other = request_of("carol", "strict", 0)
    decision = decide(other, policy, state)
    assert (decision.node, decision.candidates[0].free) == ("gpu-1", 6)
    assert fast_view(decision) == ref_decide(other, policy, state)
    # and the retry path: gpu-1 avoided, gpu-0 cordoned: full, not unusable
    avoiding = replace(other, avoid_nodes=frozenset({"gpu-1"}))
    decision = decide(avoiding, policy, state)
    assert (decision.code, decision.candidates[0].outcome) == (adm.CAPACITY, adm.FULL)
    assert fast_view(decision) == ref_decide(avoiding, policy, state)
