"""Property tests of admission: what must hold for every cluster, policy and event order.

* a decision never grants more than is free, and slices are never double-booked;
* no interleaving of admit / release / pod events (pending, bound, succeeded, deleted)
  and cordons ever exceeds a quota or overbooks a slice type (a state machine that
  plays the spawner, KubeSpawner, the scheduler and the watch);
* fallback reaches only adequate candidates, within max_fallback_steps, and never when
  the tier does not fall back; a refusal for capacity means nothing allowed was free;
* decisions are deterministic, whatever order nodes and pods arrived in.

The strategies are in ``k8s_strategies.py``; the state kept incrementally equals one
rebuilt from scratch is in ``test_cluster_properties.py``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

from hypothesis import event, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from k8s_factories import node
from k8s_strategies import (
    CATALOG,
    CORDON_TAINT,
    PROFILES,
    TEAMS,
    TIERS,
    USERS,
    allocatable,
    bound_counts,
    build_state,
    clusters,
    hub_pod,
    quota_limits,
    quota_sets,
    request_of,
    reserved_counts,
    spawn_requests,
)

from mig_spawner.core import admission as adm
from mig_spawner.core.admission import Decision, SpawnRequest, admit, availability, decide
from mig_spawner.core.catalog import WHOLE_GPU
from mig_spawner.core.chains import adequate
from mig_spawner.core.cluster import ADDED, DELETED, MODIFIED, ClusterState
from mig_spawner.core.nodes import parse_node
from mig_spawner.core.pods import TERMINAL_PHASES, label_value
from mig_spawner.core.policy import build_policy

# ----------------------------------------------------------------------------- 1. capacity


@settings(max_examples=150, deadline=None)
@given(
    cluster=clusters(),
    quotas=quota_sets,
    default_quota=quota_limits,
    charge=st.sampled_from(["granted", "requested"]),
    requests=st.lists(spawn_requests, min_size=1, max_size=12),
)
def test_admit_never_grants_more_than_is_free(cluster, quotas, default_quota, charge, requests):
    nodes, pods = cluster
    policy = build_policy(
        tiers=TIERS, team_quotas=quotas, default_quota=default_quota, charge=charge
    )
    state = build_state(nodes, pods)
    capacity = {(o["metadata"]["name"], r): n for o in nodes for r, n in allocatable(o).items()}
    held = bound_counts(pods)
    for user, tier, pick, key_no in requests:
        key = f"jhub/server-{key_no}"
        state.forget(key)  # admit() replaces the key's reservation; free is counted after
        reserved = reserved_counts(state)
        free = {k: cap - held[k] - reserved[k] for k, cap in capacity.items()}
        decision = admit(request_of(user, tier, pick), policy, state, pod_key=key)
        event(f"decision: {decision.code}{' (fallback)' if decision.fallback else ''}")
        if decision.admitted:
            granted = decision.granted
            info = state.nodes[decision.node]
            assert info.usable and info.offers.get(granted, 0) > 0
            assert info.admits(decision.tier_node_selector, decision.tolerations) is None
            assert free[(decision.node, granted.resource)] > 0, "granted a slice that was not free"
            assert state.reservations[key].node == decision.node
        else:
            assert key not in state.reservations
        reserved = reserved_counts(state)
        for (name, resource), cap in capacity.items():
            assert held[(name, resource)] + reserved[(name, resource)] <= cap, (name, resource)
            info = state.nodes[name]
            kind = info.resources[resource]
            assert (
                state.free(info, kind) == cap - held[(name, resource)] - reserved[(name, resource)]
            )


# ----------------------------------------------------------------------------- 2. quotas


MACHINE_NODES = {
    "mixed-a": node("mixed-a", mig=["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]),
    "mixed-b": node("mixed-b", mig=["1g.10gb"] * 3, whole_gpus=1),
    "single-3g": node("single-3g", strategy="single", mig=["3g.40gb"] * 2),
    "single-1g": node("single-1g", strategy="single", mig=["1g.10gb"] * 2),
}


MACHINE_KEYS = {
    f"jhub/jupyter-{label_value(user)}{'--' + server if server else ''}": (user, server)
    for user in USERS
    for server in ("", "gpu")
}


@dataclass
class ApiPod:
    """A hub pod as the Kubernetes API holds it."""

    key: str
    user: str
    server: str
    decision: Decision
    uid: str
    phase: str = "Pending"
    node: str | None = None
    doomed: bool = False  # deleted by KubeSpawner; the scheduler no longer binds it
    pinned: str = ""  # the node its required affinity names

    @property
    def active(self) -> bool:
        return self.phase not in TERMINAL_PHASES

    def obj(self) -> dict:
        d = self.decision
        return hub_pod(
            self.key.split("/", 1)[1],
            node_name=self.node,
            resource=d.granted.resource,
            kind=d.granted,
            pinned=self.pinned,
            requested_profile=d.requested.profile,
            charge_mode=d.charge_mode,
            user=self.user,
            team=d.team,
            phase=self.phase,
            server=self.server,
            uid=self.uid,
        )


class HubMachine(RuleBasedStateMachine):
    """The spawner (admit, release), KubeSpawner (create/delete pods), the scheduler (bind),
    pods finishing, admins cordoning, and the watch feeding every change to the state.

    The scheduler binds a pod only where it fits by bound pods (it knows nothing of
    reservations) and, as the spawner's node selector is the GPU product, to any node
    with the granted slice type.
    """

    def __init__(self):
        super().__init__()
        self.state = ClusterState()
        self.nodes = {name: dict(obj) for name, obj in MACHINE_NODES.items()}
        for obj in self.nodes.values():
            self.state.apply_node_event(ADDED, obj)
        self.policy = build_policy(tiers=TIERS)
        self.api: dict[str, ApiPod] = {}
        self.spawning: dict[str, Decision] = {}  # admitted, pod not created yet
        self.cordoned: set[str] = set()
        self.uids = itertools.count()

    @initialize(
        quotas=quota_sets,
        default_quota=quota_limits,
        charge=st.sampled_from(["granted", "requested"]),
    )
    def configure(self, quotas, default_quota, charge):
        note(f"quotas={quotas} default={default_quota} charge={charge}")
        self.policy = build_policy(
            tiers=TIERS, team_quotas=quotas, default_quota=default_quota, charge=charge
        )

    # -- the spawner

    @rule(
        key=st.sampled_from(sorted(MACHINE_KEYS)),
        tier=st.sampled_from(sorted(TIERS)),
        pick=st.integers(0, 2),
    )
    def spawn(self, key, tier, pick):
        """JupyterHub starts a server that is not running (its old pod may linger)."""
        old = self.api.get(key)
        if key in self.spawning or (old is not None and old.active):
            return
        user, server = MACHINE_KEYS[key]
        decision = admit(request_of(user, tier, pick, server), self.policy, self.state, pod_key=key)
        note(f"spawn {key} {tier}: {decision.code} {decision.node}")
        event(f"spawn: {decision.code}")
        if decision.admitted:
            self.spawning[key] = decision

    @precondition(lambda self: self.spawning)
    @rule(data=st.data())
    def spawn_fails_before_its_pod(self, data):
        key = data.draw(st.sampled_from(sorted(self.spawning)))
        self.state.forget(key)
        del self.spawning[key]

    @precondition(lambda self: any(k not in self.api for k in self.spawning))
    @rule(data=st.data())
    def create_pod(self, data):
        """KubeSpawner creates the pod (once any old pod of that name is gone)."""
        key = data.draw(st.sampled_from(sorted(k for k in self.spawning if k not in self.api)))
        user, server = MACHINE_KEYS[key]
        decision = self.spawning.pop(key)
        reservation = self.state.reservations.get(key)
        if reservation is None:  # displaced (its node was cordoned): the spawner decides again
            assert key in self.state.displaced
            return
        p = ApiPod(key, user, server, decision, uid=f"uid-{next(self.uids)}")
        p.pinned = reservation.node  # pinned where the slice is reserved now
        self.api[key] = p
        self.state.apply_pod_event(ADDED, p.obj())

    def _pending(self):
        return sorted(k for k, p in self.api.items() if p.phase == "Pending" and not p.doomed)

    @precondition(lambda self: self._pending())
    @rule(data=st.data())
    def spawn_times_out(self, data):
        """The spawner gives up on a pending pod: release, and KubeSpawner deletes it."""
        key = data.draw(st.sampled_from(self._pending()))
        self.state.forget(key)
        self.api[key].doomed = True

    # -- the scheduler and the kubelet

    @precondition(lambda self: self._pending())
    @rule(data=st.data())
    def schedule(self, data):
        key = data.draw(st.sampled_from(self._pending()))
        p = self.api[key]
        granted = p.decision.granted
        bound = Counter()
        for q in self.api.values():
            if q.node and q.active:
                bound[(q.node, q.decision.granted.resource)] += 1
        fits = [
            name
            for name, obj in sorted(self.nodes.items())
            if name not in self.cordoned
            and name == p.pinned
            and parse_node(obj, CATALOG).resources.get(granted.resource) == granted
            and bound[(name, granted.resource)] < allocatable(obj).get(granted.resource, 0)
        ]
        if not fits:
            return
        p.node = data.draw(st.sampled_from(fits))
        p.phase = "Running"
        note(f"bind {key} -> {p.node} (reserved on {p.decision.node})")
        self.state.apply_pod_event(MODIFIED, p.obj())

    def _running(self):
        return sorted(k for k, p in self.api.items() if p.phase == "Running")

    @precondition(lambda self: self._running())
    @rule(data=st.data(), phase=st.sampled_from(TERMINAL_PHASES))
    def pod_finishes(self, data, phase):
        key = data.draw(st.sampled_from(self._running()))
        self.api[key].phase = phase
        self.state.apply_pod_event(MODIFIED, self.api[key].obj())

    @precondition(lambda self: self._running())
    @rule(data=st.data())
    def stop_server(self, data):
        """JupyterHub stops a running server: the spawner releases (nothing: the bound pod
        holds the slice), then KubeSpawner deletes the pod."""
        key = data.draw(st.sampled_from(self._running()))
        assert self.state.forget(key) is False
        self.state.apply_pod_event(DELETED, self.api.pop(key).obj())

    @precondition(lambda self: self.api)
    @rule(data=st.data())
    def pod_deleted(self, data):
        key = data.draw(st.sampled_from(sorted(self.api)))
        p = self.api.pop(key)
        self.state.apply_pod_event(DELETED, p.obj())

    @rule(name=st.sampled_from(sorted(MACHINE_NODES)))
    def toggle_cordon(self, name):
        obj = self.nodes[name] = dict(MACHINE_NODES[name])
        if name in self.cordoned:
            self.cordoned.discard(name)
        else:
            self.cordoned.add(name)
            obj["spec"] = {"unschedulable": True, "taints": [CORDON_TAINT]}
        self.state.apply_node_event(MODIFIED, obj)
        for key in [k for k in self.spawning if k in self.state.displaced]:
            # no pod yet and no other node with room: dropped; the spawner decides again
            assert self.state.displaced[key] == f"node {name} is cordoned"
            del self.spawning[key]
            self.state.forget(key)
        for key, res in self.state.reservations.items():
            assert res.node not in self.cordoned, key  # moved within reach, or dropped

    # -- what must hold after every step

    def _committed(self):
        """Everything that holds (or is about to hold) quota: active pods + spawns in flight."""
        for key, p in self.api.items():
            if p.active:
                yield key, p.user, p.decision
        for key, d in self.spawning.items():
            yield key, MACHINE_KEYS[key][0], d

    @invariant()
    def quotas_are_never_exceeded(self):
        scopes: dict[tuple, list] = {}
        for _, user, d in self._committed():
            scope = ("team", d.team) if d.team else ("user", user)
            scopes.setdefault(scope, []).append((user, d.charge))
        for (kind, name), holders in scopes.items():
            quota = self.policy.quota_for(name if kind == "team" else None)
            slices = sum(c.compute_slices for _, c in holders)
            memory = sum(c.memory_gb for _, c in holders)
            if quota.compute_slices is not None:
                assert slices <= quota.compute_slices, (name, slices, quota)
            if quota.memory_gb is not None:
                assert memory <= quota.memory_gb, (name, memory, quota)
            if quota.servers is not None:
                assert len(holders) <= quota.servers, (name, len(holders), quota)
            if quota.per_user_compute_slices is not None:
                per_user = Counter()
                for user, c in holders:
                    per_user[user] += c.compute_slices
                assert max(per_user.values()) <= quota.per_user_compute_slices, (name, per_user)

    @invariant()
    def the_cores_usage_matches_the_cluster(self):
        """state.usage() == active pods + spawns whose pod is not there yet, recomputed."""
        for user in USERS:
            for team in ("", *TEAMS):
                expected = [0, 0.0, 0, 0]
                for _, holder, d in self._committed():
                    same = (d.team or "") == team and (team or holder == user)
                    if same:
                        expected[0] += d.charge.compute_slices
                        expected[1] += d.charge.memory_gb
                        expected[2] += 1
                        if holder == user:
                            expected[3] += d.charge.compute_slices
                got = self.state.usage(team, user)
                assert [
                    got.compute_slices,
                    got.memory_gb,
                    got.servers,
                    got.user_compute_slices,
                ] == expected, (user, team)

    @invariant()
    def slices_are_never_double_booked(self):
        """Per slice type: bound pods + pinned pending pods + spawns in flight <= what exists."""
        total = Counter()
        for obj in self.nodes.values():
            info = parse_node(obj, CATALOG)
            for kind, n in info.offers.items():
                total[kind] += n
        committed = Counter()
        for p in self.api.values():
            if p.active:  # a pinned pod holds its slice, bound or not, until it is gone
                committed[p.decision.granted] += 1
        for d in self.spawning.values():
            committed[d.granted] += 1
        for kind, n in committed.items():
            assert n <= total[kind], (kind.label, n, total[kind])
        # and the core's own books: per node, bound pods + reservations <= allocatable
        for name, obj in self.nodes.items():
            info = self.state.nodes[name]
            for resource, cap in allocatable(obj).items():
                bound = sum(
                    1
                    for p in self.api.values()
                    if p.active
                    and (p.node or p.pinned) == name
                    and p.decision.granted.resource == resource
                )
                reserved = sum(
                    1
                    for r in self.state.reservations.values()
                    if r.node == name and r.slice_type.resource == resource
                )
                assert bound + reserved <= cap, (name, resource, bound, reserved)
                assert self.state.free(info, info.resources[resource]) == cap - bound - reserved


TestHubMachine = HubMachine.TestCase


# ----------------------------------------------------------------------------- 3. fallback


@st.composite
def random_tiers(draw):
    g = draw(st.integers(1, 7))
    data = {
        "compute_slices": g,
        "min_memory_gb": draw(st.sampled_from([0, 5, 10, 15, 20, 40, 80])),
        "fallback": draw(st.booleans()),
    }
    if draw(st.booleans()):
        data["max_compute_slices"] = draw(st.integers(g, 7))
    if draw(st.booleans()):
        data["max_fallback_steps"] = draw(st.integers(0, 3))
    chain = draw(
        st.none()
        | st.lists(st.sampled_from([*PROFILES, WHOLE_GPU]), unique=True, min_size=1, max_size=5)
    )
    return data, chain


@settings(max_examples=400, deadline=None)
@given(cluster=clusters(), tier=random_tiers())
def test_fallback_reaches_only_adequate_candidates_within_its_steps(cluster, tier):
    data, chain = tier
    policy = build_policy(
        tiers={"t": data}, fallback_chains=None if chain is None else {"t": chain}
    )
    t = policy.tiers["t"]
    state = build_state(*cluster)
    d = decide(SpawnRequest(user="u", tier="t"), policy, state)
    offered = availability(state, t)
    for c in d.candidates:
        assert adequate(t, c.slice_type), c
        if chain is not None:
            assert c.slice_type.profile in chain
    steps = [c.step for c in d.candidates]
    assert steps == sorted(steps)
    if chain is not None:  # the admin's order
        order = [chain.index(c.slice_type.profile) for c in d.candidates]
        assert order == sorted(order)
    if not offered:
        assert d.code == adm.NO_MATCHING_GPU
        event("fallback tier: no-matching-gpu")
        return
    first = offered[0][0].profile
    assert d.requested.profile == first
    event(f"fallback tier: {d.code}" + (f" at step {d.step}" if d.admitted else ""))
    passed = d.candidates
    if d.admitted:
        assert adequate(t, d.granted)
        assert d.fallback == (d.step > 0) == (d.granted.profile != first)
        if t.max_fallback_steps is not None:
            assert d.step <= t.max_fallback_steps
        if not t.fallback:
            assert d.step == 0 and d.granted.profile == first
        assert d.candidates[-1].outcome == adm.GRANTED
        assert d.candidates[-1].slice_type == d.granted
        passed = d.candidates[:-1]
    else:  # no quota here: refused only because nothing allowed was free
        assert d.code == adm.CAPACITY
    # greedy: every candidate passed over was out of reach or had nothing free
    limit = 0 if not t.fallback else t.max_fallback_steps
    for c in passed:
        if limit is None or c.step <= limit:
            assert c.outcome in (adm.FULL, adm.UNUSABLE), c
            assert c.free == 0
            for n in state.nodes_offering(c.slice_type):
                assert not n.usable or state.free(n, c.slice_type) == 0
        else:
            assert c.outcome in (adm.FALLBACK_DISABLED, adm.BEYOND_MAX_STEPS)


# ----------------------------------------------------------------------------- 4. determinism


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    cluster=clusters(),
    quotas=quota_sets,
    requests=st.lists(spawn_requests, min_size=1, max_size=8),
)
def test_decisions_are_deterministic_whatever_the_event_order(data, cluster, quotas, requests):
    nodes, pods = cluster
    policy = build_policy(tiers=TIERS, team_quotas=quotas)
    a = build_state(nodes, pods)
    b = build_state(data.draw(st.permutations(nodes)), data.draw(st.permutations(pods)))
    for user, tier, pick, key_no in requests:
        req = request_of(user, tier, pick)
        assert decide(req, policy, a).to_dict() == decide(req, policy, b).to_dict()
        key = f"jhub/server-{key_no}"
        da = admit(req, policy, a, pod_key=key)
        db = admit(req, policy, b, pod_key=key)
        assert da.to_dict() == db.to_dict()
