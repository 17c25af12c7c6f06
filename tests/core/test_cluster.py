"""ClusterState: incremental updates from watch events, reservations, and what a pod holds."""

from __future__ import annotations

import pytest
from k8s_factories import node, pod

from mig_spawner.core.cluster import ADDED, DELETED, MODIFIED, ClusterState, Reservation
from mig_spawner.core.pods import (
    Charge,
    label_value,
)

MIG1 = "nvidia.com/mig-1g.10gb"


def only_kind(state, profile="1g.10gb"):
    return next(k for k in state.slice_types() if k.profile == profile)


def free_total(state, profile="1g.10gb"):
    kind = only_kind(state, profile)
    return sum(state.free(n, kind) for n in state.nodes_offering(kind))


@pytest.fixture
def state():
    s = ClusterState()
    s.apply_node_event(ADDED, node("a", mig=["1g.10gb"] * 7))
    s.apply_node_event(ADDED, node("b", mig=["1g.10gb"] * 2 + ["2g.20gb", "3g.40gb"]))
    return s


def test_pods_in_any_namespace_hold_slices_on_their_node(state):
    assert free_total(state) == 9
    state.apply_pod_event(ADDED, pod("x", namespace="ml-batch", node="a", resources={MIG1: 3}))
    state.apply_pod_event(ADDED, pod("y", namespace="kube-system", node="b", resources={MIG1: 1}))
    assert free_total(state) == 5
    state.apply_pod_event(
        MODIFIED, pod("x", namespace="ml-batch", node="a", resources={MIG1: 3}, phase="Succeeded")
    )
    assert free_total(state) == 8  # a finished pod holds nothing
    state.apply_pod_event(DELETED, pod("y", namespace="kube-system", node="b", resources={MIG1: 1}))
    assert free_total(state) == 9


def test_unbound_pod_holds_nothing_on_any_node(state):
    state.apply_pod_event(ADDED, pod("p", resources={MIG1: 1}))
    assert free_total(state) == 9


def test_node_modify_and_delete_update_the_index(state):
    state.apply_node_event(MODIFIED, node("a", mig=["3g.40gb"] * 2))
    assert free_total(state) == 2
    assert [n.name for n in state.nodes_offering(only_kind(state, "3g.40gb"))] == ["a", "b"]
    state.apply_node_event(DELETED, node("b"))
    assert [k.profile for k in state.slice_types()] == ["3g.40gb"]
    assert "b" not in state.nodes


def test_version_bumps_on_every_change(state):
    v = state.version
    state.apply_pod_event(ADDED, pod("p", node="a", resources={MIG1: 1}))
    assert state.version > v


def test_reservation_holds_slice_until_pod_is_bound_and_quota_until_seen(state):
    kind = only_kind(state)
    node_a = state.nodes["a"]
    state.assume(Reservation("jhub/p", "alice", "vision", kind, "a", Charge(1, 10)))
    assert state.free(node_a, kind) == 6
    assert state.usage("vision", "alice").compute_slices == 1
    # The pod is created but not yet scheduled: the reservation still holds the slice,
    # the pod itself now holds the quota (no double count).
    state.apply_pod_event(ADDED, pod("p", resources={MIG1: 1}, user="alice", team="vision"))
    assert state.free(node_a, kind) == 6
    assert state.usage("vision", "alice").compute_slices == 1
    # Bound: the pod holds the slice; the reservation is gone.
    state.apply_pod_event(
        MODIFIED, pod("p", node="a", resources={MIG1: 1}, user="alice", team="vision")
    )
    assert "jhub/p" not in state.reservations
    assert state.free(node_a, kind) == 6
    assert state.usage("vision", "alice").compute_slices == 1
    state.apply_pod_event(
        DELETED, pod("p", node="a", resources={MIG1: 1}, user="alice", team="vision")
    )
    assert state.free(node_a, kind) == 7 and state.usage("vision", "alice").servers == 0


def test_release_and_double_reserve(state):
    kind = only_kind(state)
    r = Reservation("jhub/p", "alice", "", kind, "a", Charge(1, 10))
    state.assume(r)
    with pytest.raises(ValueError):
        state.assume(r)
    assert state.forget("jhub/p") is True
    assert state.forget("jhub/p") is False
    assert free_total(state) == 9 and state.usage("", "alice").servers == 0


def test_deleting_a_pending_pod_drops_its_reservation(state):
    kind = only_kind(state)
    state.assume(Reservation("jhub/p", "alice", "", kind, "a", Charge(1, 10)))
    state.apply_pod_event(DELETED, pod("p", resources={MIG1: 1}, user="alice"))
    assert not state.reservations and free_total(state) == 9


def test_usage_is_scoped_by_team_or_by_user_on_default_quota(state):
    state.apply_pod_event(
        ADDED,
        pod("a1", node="a", resources={MIG1: 1}, user="alice", team="vision", server_name="one"),
    )
    state.apply_pod_event(
        ADDED, pod("b1", node="a", resources={MIG1: 1}, user="bob", team="vision")
    )
    state.apply_pod_event(ADDED, pod("c1", node="a", resources={MIG1: 1}, user="carol"))
    state.apply_pod_event(ADDED, pod("d1", node="a", resources={MIG1: 1}, user="dave"))
    vision = state.usage("vision", "alice")
    assert (vision.compute_slices, vision.servers, vision.user_compute_slices) == (2, 2, 1)
    assert vision.own_servers == [("one", "1g.10gb")]
    carol = state.usage("", "carol")
    assert (carol.compute_slices, carol.servers) == (1, 1)  # dave's pod is not carol's


def test_replace_resyncs_after_a_relist(state):
    state.apply_pod_event(ADDED, pod("gone", node="a", resources={MIG1: 2}))
    problems = state.replace_pods([pod("new", node="b", resources={MIG1: 1}), {"bad": 1}])
    assert "jhub/gone" not in state.pods and "jhub/new" in state.pods
    assert problems == ["not a Pod: metadata.name is missing"]
    assert free_total(state) == 8
    state.replace_nodes([node("c", mig=["1g.10gb"])])
    assert set(state.nodes) == {"c"}
    assert free_total(state) == 1


def test_names_that_are_not_label_values_still_match_their_pods(state):

    user, team = "alice@example.com", "Data Science"
    assert label_value(user) != user and label_value(label_value(user)) == label_value(user)
    assert label_value("bob") == "bob" and label_value("a" * 70) != label_value("a" * 71)
    state.apply_pod_event(ADDED, pod("p", node="a", resources={MIG1: 1}, user=user, team=team))
    usage = state.usage(team, user)
    assert (usage.compute_slices, usage.user_compute_slices) == (1, 1)
    assert usage.own_servers == [("", "1g.10gb")]


def test_a_user_named_like_anothers_encoding_shares_nothing_with_them(state):
    """label_value is not injective; scopes are exact names, so it does not matter."""

    for real in ("alice@example.com", "jürgen", "Data Science"):
        twin = label_value(real)  # a valid name in its own right
        assert twin != real
        state.apply_pod_event(
            ADDED, pod(f"p-{twin}", node="a", resources={MIG1: 1}, user=real, server_name="x")
        )
        state.apply_pod_event(
            ADDED, pod(f"t-{twin}", node="b", resources={MIG1: 1}, user="u", team=real)
        )
        mine = state.usage("", twin)
        assert (mine.compute_slices, mine.servers, mine.own_servers) == (0, 0, [])
        assert state.usage("", real).servers == 1
        assert state.usage(twin, "u").servers == 0 and state.usage(real, "u").servers == 1
    # a team and a user of the same name are two scopes too
    state.apply_pod_event(ADDED, pod("same", node="a", resources={MIG1: 1}, user="ops"))
    assert state.usage("ops", "someone").servers == 0


# ----------------------------------------------------------------------------------------
# A garbled node is a problem of that node, never an aborted relist.


def test_one_garbled_node_does_not_abort_a_relist():
    bad = node("bad", mig=["1g.10gb"])
    bad["spec"]["taints"] = 5
    state = ClusterState()
    problems = state.replace_nodes([node("good", mig=["1g.10gb"] * 3), bad])
    assert problems == [] and set(state.nodes) == {"good", "bad"}
    assert state.nodes["bad"].problems == ("spec.taints is not a list",)
    state.apply_pod_event(ADDED, {"metadata": {"name": "p"}, "spec": {"containers": 1}})


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


# ----------------------------------------------------------------------------------------
# Issue 10: whose pods count, and where (the quota that applies now, pinned pods).


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


def test_pods_of_a_user_are_their_active_managed_pods_and_follow_events():
    state = ClusterState()
    state.apply_node_event(ADDED, node("h1", mig=["1g.10gb"] * 7))
    mine = [
        pod(f"jupyter-bob-{i}", node="h1", resources={"nvidia.com/mig-1g.10gb": 1}, user="bob")
        for i in range(2)
    ]
    for obj in [*mine, pod("jupyter-eve", node="h1", user="eve"), pod("job", node="h1")]:
        state.apply_pod_event(ADDED, obj)
    assert [p.key for p in state.pods_of("bob")] == ["jhub/jupyter-bob-0", "jhub/jupyter-bob-1"]
    assert [p.key for p in state.snapshot().pods_of("bob")] == [p.key for p in state.pods_of("bob")]
    done = {**mine[0], "status": {"phase": "Succeeded"}}
    state.apply_pod_event(MODIFIED, done)
    state.apply_pod_event(DELETED, mine[1])
    assert state.pods_of("bob") == [] and state.pods_of("nobody") == []
    assert [p.key for p in state.pods_of("eve")] == ["jhub/jupyter-eve"]
