"""Regression tests for bugs found in the core while building the CLI and property tests."""

from __future__ import annotations

import pytest
from k8s_factories import node, pod

from mig_spawner.core.catalog import default_catalog
from mig_spawner.core.cluster import ADDED, DELETED, MODIFIED, ClusterState
from mig_spawner.core.nodes import parse_node
from mig_spawner.core.pods import parse_pod

CATALOG = default_catalog()

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


def test_one_garbled_node_does_not_abort_a_relist():
    bad = node("bad", mig=["1g.10gb"])
    bad["spec"]["taints"] = 5
    state = ClusterState()
    problems = state.replace_nodes([node("good", mig=["1g.10gb"] * 3), bad])
    assert problems == [] and set(state.nodes) == {"good", "bad"}
    assert state.nodes["bad"].problems == ("spec.taints is not a list",)
    state.apply_pod_event(ADDED, {"metadata": {"name": "p"}, "spec": {"containers": 1}})


# ----------------------------------------------------------------------------------------
# `kubectl cordon` sets spec.unschedulable, and the node lifecycle controller then adds the
# taint node.kubernetes.io/unschedulable:NoSchedule (not-ready / unreachable for NotReady
# nodes). The taint made the node unreachable for every tier, so its slice types vanished
# from the chain: a cluster under maintenance answered "no GPU fits this tier, ask your
# admin" (no-matching-gpu), and a fallback past a cordoned type was not called a fallback.

CORDON_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
UNREACHABLE_TAINTS = [
    {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
]


def _decide(*nodes, tier="t"):
    from mig_spawner.core.admission import SpawnRequest, decide
    from mig_spawner.core.policy import build_policy

    state = ClusterState()
    for n in nodes:
        state.apply_node_event(ADDED, n)
    pol = build_policy(tiers={"t": {"compute_slices": 1, "min_memory_gb": 10}})
    return decide(SpawnRequest(user="u", tier=tier), pol, state), state, pol


def test_a_cordoned_node_with_its_taint_is_reported_cordoned():
    d, state, pol = _decide(
        node("c", mig=["1g.10gb"] * 7, unschedulable=True, taints=[CORDON_TAINT])
    )
    assert d.code == "capacity", d.message
    assert [(c.slice_type.profile, c.outcome, c.reason) for c in d.candidates] == [
        ("1g.10gb", "unusable", "its node(s) are cordoned")
    ]
    from mig_spawner.core.admission import availability

    assert [(k.profile, free, total) for k, free, total in availability(state, pol.tiers["t"])] == [
        ("1g.10gb", 0, 7)
    ]


def test_a_fallback_past_a_cordoned_type_is_a_fallback():
    d, _, _ = _decide(
        node("c", mig=["1g.10gb"] * 7, unschedulable=True, taints=[CORDON_TAINT]),
        node("n", mig=["2g.20gb"], ready=False, taints=UNREACHABLE_TAINTS),
        node("ok", mig=["3g.40gb"]),
    )
    assert d.admitted and d.granted.profile == "3g.40gb" and d.fallback
    assert [c.reason for c in d.candidates[:2]] == [
        "its node(s) are cordoned",
        "its node(s) are NotReady",
    ]


def test_condition_taints_still_block_a_node_that_looks_usable():
    # A stale not-ready taint on a Ready node: the scheduler still refuses it, so do we.
    d, _, _ = _decide(
        node(
            "stale",
            mig=["1g.10gb"],
            taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}],
        )
    )
    assert d.code == "no-matching-gpu"


# ----------------------------------------------------------------------------------------
# A server restarted while its previous pod (same name: KubeSpawner's pod names are fixed
# per server) is still listed -- Succeeded/Failed and kept (delete_stopped_pods=False), or
# still terminating -- got a reservation that (a) counted for no quota, because a pod of
# that name was "seen", and (b) was dropped by the old pod's deletion event before the
# new pod existed. Either way a teammate could be admitted past the team's quota, and the
# slice could be handed out twice.


def _respawn_setup(uid: str | None):
    from mig_spawner.core.admission import SpawnRequest, admit
    from mig_spawner.core.policy import build_policy

    pol = build_policy(
        tiers={"nb": {"compute_slices": 1}}, team_quotas={"vision": {"compute_slices": 1}}
    )
    state = ClusterState()
    state.apply_node_event(ADDED, node("h", mig=["1g.10gb"] * 2))
    old = pod("jupyter-alice", node="h", resources={MIG1: 1}, user="alice", team="vision")
    old["status"]["phase"] = "Succeeded"
    if uid:
        old["metadata"]["uid"] = uid
    state.apply_pod_event(ADDED, old)

    def spawn(user):
        req = SpawnRequest(user=user, tier="nb", groups=("vision",))
        return admit(req, pol, state, pod_key=f"jhub/jupyter-{user}")

    return state, old, spawn


@pytest.mark.parametrize("uid", [None, "uid-old"])
def test_a_restarted_servers_reservation_counts_while_its_old_pod_lingers(uid):
    state, _, spawn = _respawn_setup(uid)
    assert spawn("alice").admitted
    assert state.usage("vision", "alice").compute_slices == 1
    second = spawn("bob")
    assert not second.admitted and second.code == "quota"


@pytest.mark.parametrize("uid", [None, "uid-old"])
def test_the_old_pods_deletion_does_not_drop_the_new_reservation(uid):
    state, old, spawn = _respawn_setup(uid)
    assert spawn("alice").admitted
    state.apply_pod_event(MODIFIED, old)  # e.g. deletionTimestamp set
    state.apply_pod_event(DELETED, old)
    assert "jhub/jupyter-alice" in state.reservations
    assert state.usage("vision", "alice").compute_slices == 1
    assert spawn("bob").code == "quota"
    # the new pod appears, runs, and is deleted: now the reservation goes
    new = pod("jupyter-alice", resources={MIG1: 1}, user="alice", team="vision")
    new["metadata"]["uid"] = "uid-new"
    state.apply_pod_event(ADDED, new)
    assert state.usage("vision", "alice").compute_slices == 1  # the pod holds it now
    state.apply_pod_event(DELETED, new)
    assert not state.reservations and state.usage("vision", "alice").servers == 0


def test_a_terminating_old_pod_still_running_is_told_apart_by_uid():
    state, old, _ = _respawn_setup("uid-old")
    old["status"]["phase"] = "Running"
    state.apply_pod_event(MODIFIED, old)  # the previous server is still shutting down
    from mig_spawner.core.admission import SpawnRequest, admit
    from mig_spawner.core.policy import build_policy

    pol = build_policy(tiers={"nb": {"compute_slices": 1}})
    assert admit(
        SpawnRequest(user="alice", tier="nb"), pol, state, pod_key="jhub/jupyter-alice"
    ).admitted
    kind = next(iter(state.nodes["h"].offers))
    assert state.free(state.nodes["h"], kind) == 0  # the old pod's slice + the reservation
    old["metadata"]["deletionTimestamp"] = "2026-11-20T10:00:00Z"
    state.apply_pod_event(MODIFIED, old)
    assert "jhub/jupyter-alice" in state.reservations
    state.apply_pod_event(DELETED, old)
    assert "jhub/jupyter-alice" in state.reservations
    assert state.free(state.nodes["h"], kind) == 1


# ----------------------------------------------------------------------------------------
# A reservation names a node, but the spawner's node selector names only the GPU model, so
# the scheduler may bind the pod to another node of that slice type -- one whose free
# slices were reserved for other spawns. The books then showed that node overbooked (free
# clamped to 0) and the reservation's own node with a spare slice that did not exist, so
# one more spawn than there were slices was admitted.


def test_a_pod_bound_elsewhere_moves_the_displaced_reservation_to_the_freed_node():
    from mig_spawner.core.admission import SpawnRequest, admit
    from mig_spawner.core.policy import build_policy

    pol = build_policy(tiers={"nb": {"compute_slices": 1, "fallback": False}})
    state = ClusterState()
    state.apply_node_event(ADDED, node("a", mig=["1g.10gb"]))
    state.apply_node_event(ADDED, node("b", mig=["1g.10gb"]))

    def spawn(user):
        return admit(SpawnRequest(user=user, tier="nb"), pol, state, pod_key=f"jhub/{user}")

    assert spawn("u1").node == "a" and spawn("u2").node == "b"
    # the scheduler puts u1's pod on b
    state.apply_pod_event(ADDED, pod("u1", node="b", resources={MIG1: 1}, user="u1"))
    assert state.reservations["jhub/u2"].node == "a"
    third = spawn("u3")
    assert not third.admitted and third.code == "capacity"  # 2 slices, 2 servers
    kind = next(iter(state.nodes["a"].offers))
    assert [state.free(state.nodes[n], kind) for n in "ab"] == [0, 0]
    # u2's pod lands on a as its reservation now says: nothing moves
    state.apply_pod_event(ADDED, pod("u2", node="a", resources={MIG1: 1}, user="u2"))
    assert not state.reservations


def test_a_foreign_pod_on_a_reserved_slice_pushes_the_reservation_to_a_free_node():
    state = ClusterState()
    state.apply_node_event(ADDED, node("a", mig=["1g.10gb"]))
    state.apply_node_event(ADDED, node("b", mig=["1g.10gb"] * 2))
    kind = next(iter(state.nodes["a"].offers))
    from mig_spawner.core.cluster import Reservation
    from mig_spawner.core.pods import Charge

    state.assume(Reservation("jhub/u", "u", "", kind, "a", Charge(1, 10)))
    state.apply_pod_event(ADDED, pod("batch", namespace="ml", node="a", resources={MIG1: 1}))
    assert state.reservations["jhub/u"].node == "b"
    assert state.free(state.nodes["b"], kind) == 1
    # nowhere left to go: the reservation stays and the node shows 0 free
    state.apply_pod_event(ADDED, pod("batch2", namespace="ml", node="b", resources={MIG1: 2}))
    assert state.reservations["jhub/u"].node == "b"
    assert [state.free(state.nodes[n], kind) for n in "ab"] == [0, 0]


# ----------------------------------------------------------------------------------------
# Nodes of one slice type can report different SM/memory figures (GFD versions differ, or
# a label is missing and the catalog fills in). The state kept the figures of whichever
# node it saw first, so the same cluster gave different messages depending on event
# order, and the granted slice was described with another node's figures.


def test_figures_do_not_depend_on_the_order_nodes_arrived_in():
    from mig_spawner.core.admission import SpawnRequest, decide
    from mig_spawner.core.policy import build_policy

    a = node("a", mig=["1g.10gb"])
    b = node("b", mig=["1g.10gb"] * 2)
    a["metadata"]["labels"]["nvidia.com/mig-1g.10gb.multiprocessors"] = "14"
    pol = build_policy(tiers={"t": {}})
    messages = set()
    for order in ([a, b], [b, a]):
        state = ClusterState()
        for n in order:
            state.apply_node_event(ADDED, n)
        assert [k.sm_count for k in state.slice_types()] == [14]  # node a's, first by name
        d = decide(SpawnRequest(user="u", tier="t"), pol, state)
        assert d.node == "b" and d.granted.sm_count == 16  # b's own figure
        messages.add(d.message)
    assert len(messages) == 1 and "16 SMs" in messages.pop()
