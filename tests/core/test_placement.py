"""Pinning, displacement and re-deciding (issue 10, item 1), in the pure core."""

from __future__ import annotations

import pytest
from k8s_factories import node, pod

from mig_spawner.core import admission
from mig_spawner.core.catalog import default_catalog
from mig_spawner.core.cluster import ADDED, DELETED, MODIFIED, ClusterState, Reservation
from mig_spawner.core.echo import echo
from mig_spawner.core.nodes import parse_node
from mig_spawner.core.placement import pinned_terms
from mig_spawner.core.pods import Charge
from mig_spawner.core.policy import build_policy

CATALOG = default_catalog()

MIG1 = "nvidia.com/mig-1g.10gb"
POOL = {"pool": "a"}
TIERS = {"notebook": {"display_name": "nb", "compute_slices": 1, "node_selector": POOL}}


def test_the_pin_uses_the_hostname_label_and_is_anded_into_every_admin_term():
    n = parse_node(node("n1", mig=["1g.10gb"]), CATALOG)
    assert pinned_terms([], n) == [
        {
            "matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}
            ]
        }
    ]
    admin = [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["x"]}]},
    ]
    terms = pinned_terms(admin, n)
    assert len(terms) == 2 and all(
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}
        in t["matchExpressions"]
        for t in terms
    )
    assert terms[0]["matchExpressions"][0]["key"] == "zone"  # the admin's stays
    assert admin[0]["matchExpressions"] == [
        {"key": "zone", "operator": "In", "values": ["z1"]}
    ]  # not mutated
    with pytest.raises(TypeError):
        pinned_terms(["not a term"], n)


def test_a_node_without_a_hostname_label_is_pinned_by_name():
    obj = node("n1", mig=["1g.10gb"])
    del obj["metadata"]["labels"]["kubernetes.io/hostname"]
    (term,) = pinned_terms([], parse_node(obj, CATALOG))
    assert term == {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}


def _state(*nodes) -> ClusterState:
    state = ClusterState()
    for obj in nodes:
        state.apply_node_event(ADDED, obj)
    return state


def _admit(state, user="bob", avoid=()):
    policy = build_policy(tiers=TIERS)
    request = admission.SpawnRequest(user=user, tier="notebook", avoid_nodes=frozenset(avoid))
    return admission.admit(request, policy, state, pod_key=f"jhub/{user}")


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda o: o["spec"].update(unschedulable=True), "cordoned"),
        (
            lambda o: o["status"].update(conditions=[{"type": "Ready", "status": "False"}]),
            "NotReady",
        ),
        (
            lambda o: o["spec"].update(
                taints=[{"key": "gpu", "value": "x", "effect": "NoSchedule"}]
            ),
            "has untolerated taint gpu=x:NoSchedule",
        ),
        (lambda o: o["metadata"]["labels"].update(pool="b"), "lacks label pool=a"),
    ],
)
def test_a_reservation_moves_within_the_tiers_reach_or_is_dropped(change, why):
    a = node("a", mig=["1g.10gb"] * 3, labels=POOL)
    b = node("b", mig=["1g.10gb"] * 1, labels=POOL)
    c = node("c", mig=["1g.10gb"] * 7)  # most room, but outside the tier's pool
    state = _state(a, b, c)
    d = _admit(state)
    assert d.admitted and d.node == "a"
    change(a)
    state.apply_node_event(MODIFIED, a)
    assert state.reservations["jhub/bob"].node == "b"  # never c: not in the tier's reach
    # b goes too: nowhere left within reach -> dropped, with the reason
    change(b)
    state.apply_node_event(MODIFIED, b)
    assert "jhub/bob" not in state.reservations
    assert state.placement_problem("jhub/bob") == f"node b is {why}"
    assert state.usage("", "bob").servers == 0  # its quota is given back too


def test_a_deleted_node_displaces_its_reservations():
    state = _state(node("a", mig=["1g.10gb"], labels=POOL))
    assert _admit(state).admitted
    state.apply_node_event(DELETED, {"metadata": {"name": "a"}})
    assert state.placement_problem("jhub/bob") == "node a is deleted"
    state.forget("jhub/bob")
    assert state.placement_problem("jhub/bob") is None


def test_rebalancing_after_a_foreign_pod_binds_never_leaves_the_reach_or_usable_nodes():
    a = node("a", mig=["1g.10gb"], labels=POOL)
    cordoned = node("b", mig=["1g.10gb"] * 7, labels=POOL, unschedulable=True)
    outside = node("c", mig=["1g.10gb"] * 7)
    state = _state(a, cordoned, outside)
    assert _admit(state).node == "a"
    state.apply_pod_event(ADDED, pod("job", namespace="ml", node="a", resources={MIG1: 1}))
    assert state.reservations["jhub/bob"].node == "a"  # stays (and the node shows 0 free)


def test_a_pinned_pod_on_a_lost_node_is_a_placement_problem():
    state = _state(node("a", mig=["1g.10gb"], labels=POOL))
    state.apply_pod_event(ADDED, pod("bob", resources={MIG1: 1}, user="bob", pinned="a"))
    assert state.placement_problem("jhub/bob") is None
    state.apply_node_event(MODIFIED, node("a", mig=["1g.10gb"], labels=POOL, ready=False))
    assert state.placement_problem("jhub/bob") == "node a is NotReady"


def test_deciding_again_avoids_the_nodes_that_failed():
    state = _state(
        node("a", mig=["1g.10gb"] * 3, labels=POOL), node("b", mig=["1g.10gb"], labels=POOL)
    )
    assert _admit(state).node == "a"
    again = _admit(state, avoid={"a"})
    assert again.admitted and again.node == "b"
    none_left = _admit(state, avoid={"a", "b"})
    assert not none_left.admitted and none_left.code == admission.CAPACITY


def test_echoed_input_is_cut_short():
    assert echo("notebook") == "'notebook'"
    long = echo("x" * 10_000)
    assert long.startswith("'" + "x" * 64 + "'…") and "(10000 characters)" in long
    assert len(long) < 100
    policy = build_policy(tiers=TIERS)
    d = admission.decide(admission.SpawnRequest(user="u", tier="t" * 5000), policy, ClusterState())
    assert len(d.message) < 200


def test_reservation_fits_checks_usable_reach_and_type():
    a = parse_node(node("a", mig=["1g.10gb"], labels=POOL), CATALOG)
    kind = next(iter(a.offers))
    res = Reservation("k", "u", "", kind, "a", Charge(1, 10), node_selector=POOL)
    assert res.fits(a)
    assert not res.fits(parse_node(node("a", mig=["1g.10gb"]), CATALOG))  # no pool label
    assert not res.fits(parse_node(node("a", mig=["2g.20gb"], labels=POOL), CATALOG))
