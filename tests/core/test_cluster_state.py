"""ClusterState: incremental updates from watch events, and reservations."""

import pytest
from k8s_factories import node, pod

from mig_spawner.core.cluster import ADDED, DELETED, MODIFIED, ClusterState, Reservation
from mig_spawner.core.pods import Charge

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
    from mig_spawner.core.pods import label_value

    user, team = "alice@example.com", "Data Science"
    assert label_value(user) != user and label_value(label_value(user)) == label_value(user)
    assert label_value("bob") == "bob" and label_value("a" * 70) != label_value("a" * 71)
    state.apply_pod_event(ADDED, pod("p", node="a", resources={MIG1: 1}, user=user, team=team))
    usage = state.usage(team, user)
    assert (usage.compute_slices, usage.user_compute_slices) == (1, 1)
    assert usage.own_servers == [("", "1g.10gb")]


def test_a_user_named_like_anothers_encoding_shares_nothing_with_them(state):
    """label_value is not injective; scopes are exact names, so it does not matter."""
    from mig_spawner.core.pods import label_value

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
