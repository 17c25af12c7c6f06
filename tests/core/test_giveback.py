"""Borrowers: servers on a fallback slice, and whether a restart would get their own size."""

from __future__ import annotations

from k8s_factories import node, pod, state_with

from mig_spawner.core.cluster import ADDED, DELETED
from mig_spawner.core.giveback import borrowers
from mig_spawner.core.policy import build_policy

TIERS = {
    "notebook": {"display_name": "1g notebook", "compute_slices": 1, "min_memory_gb": 10},
    "training": {"display_name": "3g training", "compute_slices": 3, "min_memory_gb": 40},
    "private": {"display_name": "1g private", "compute_slices": 1, "groups": ["nlp"]},
}


def server(name, profile, *, asked=None, user="bob", server="", tier="notebook", **where):
    """A server the hub made for ``user`` in team vision: asked ``asked`` (default: the
    slice it got), runs on ``profile``; ``where``: node_name ("h1") or pinned."""
    return pod(
        name,
        node=where.get("node_name", "h1"),
        resources={f"nvidia.com/mig-{profile}": 1},
        user=user,
        team="vision",
        tier=tier,
        server_name=server,
        requested_profile=asked or profile,
        granted_profile=profile,
        pinned=where.get("pinned", ""),
    )


def borrowed(name="jupyter-bob", server_name="", **kw):
    """bob's server of the notebook tier (or ``tier``): asked a 1g, runs on a 2g."""
    return server(name, "2g.20gb", asked="1g.10gb", server=server_name, **kw)


def busy(name, profile="1g.10gb", node_name="h1"):
    return pod(name, namespace="other", node=node_name, resources={f"nvidia.com/mig-{profile}": 1})


def policy(quotas=None):
    return build_policy(tiers=TIERS, team_quotas=quotas or {"vision": {"compute_slices": 8}})


H1 = node("h1", mig=["1g.10gb"] * 3 + ["2g.20gb", "2g.20gb"])


def test_a_fallback_server_is_a_borrower_and_is_told_once_its_own_size_frees():
    state = state_with(H1, borrowed(), *(busy(f"b{i}") for i in range(3)))
    (b,) = borrowers(policy(), state, "bob", ["vision"])
    assert (b.server_name, b.tier_name) == ("", "1g notebook")
    assert (b.holds, b.wants) == ("2g.20gb", "1g.10gb")
    assert (b.free, b.total, b.can_give_back) == (0, 3, False)
    assert b.message == (
        "running on a 2g.20gb instead of a 1g.10gb: every 1g.10gb slice is taken (0 of 3 free)"
    )

    state.apply_pod_event(DELETED, busy("b1"))
    (b,) = borrowers(policy(), state, "bob", ["vision"])
    assert (b.free, b.can_give_back) == (1, True)
    assert b.message == "a 1g.10gb slice is free (1 of 3): restart to give back the 2g.20gb"
    assert b.to_dict()["can_give_back"] is True and b.to_dict()["holds"] == "2g.20gb"


def test_a_server_on_its_own_size_an_other_user_and_an_unmanaged_pod_are_not_borrowers():
    own = server("jupyter-bob-own", "1g.10gb", server="own")
    state = state_with(H1, own, borrowed("jupyter-eve", user="eve"), busy("x", "2g.20gb"))
    assert borrowers(policy(), state, "bob", ["vision"]) == []
    assert [b.server_name for b in borrowers(policy(), state, "eve", ["vision"])] == [""]


def test_a_stopped_server_or_a_tier_the_user_no_longer_sees_is_left_out():
    done = borrowed("jupyter-bob-done", "done")
    done["status"]["phase"] = "Succeeded"  # holds nothing
    hidden = borrowed("jupyter-bob-p", "p", tier="private")
    gone = borrowed("jupyter-bob-g", "g", tier="removed-tier")
    state = state_with(H1, done, hidden, gone)
    assert borrowers(policy(), state, "bob", ["vision"]) == []
    assert [b.server_name for b in borrowers(policy(), state, "bob", ["vision", "nlp"])] == ["p"]


def test_the_quota_is_read_as_the_restart_meets_it_its_own_slice_given_back():
    # vision may use 2 compute slices; bob's 2g uses both. A restart on a 1g (after the
    # 2g is given back) uses 1: allowed, although one more 1g now would be over.
    state = state_with(H1, borrowed())
    (b,) = borrowers(policy({"vision": {"compute_slices": 2}}), state, "bob", ["vision"])
    assert b.can_give_back, b.message
    # ... but a team already over by other servers is told why, not offered a restart
    other = server("jupyter-ann", "2g.20gb", user="ann")
    state.apply_pod_event(ADDED, other)
    (b,) = borrowers(policy({"vision": {"compute_slices": 2}}), state, "bob", ["vision"])
    assert not b.can_give_back and b.free == 3
    assert b.message.startswith("running on a 2g.20gb instead of a 1g.10gb: team vision's quota:")
    assert "compute slices" in b.message


def test_a_pending_pinned_server_counts_and_servers_come_in_name_order():
    pending = borrowed("jupyter-bob-b", "b", node_name=None, pinned="h1")
    state = state_with(H1, pending, borrowed("jupyter-bob-a", "a"))
    names = [b.server_name for b in borrowers(policy(), state, "bob", ["vision"])]
    assert names == ["a", "b"]
