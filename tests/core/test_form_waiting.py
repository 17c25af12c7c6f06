"""The spawn form and the waiting line: how many wait per tier, and a full tier that waits
stays selectable (core/form.py)."""

from __future__ import annotations

from k8s_factories import node, pod

from mig_spawner.core.cluster import ADDED, ClusterState
from mig_spawner.core.form import build_profile_list, live_figures
from mig_spawner.core.policy import build_policy

TIERS = {
    "waits": {"display_name": "1g waits", "compute_slices": 1, "fallback": False, "max_wait": 900},
    "now": {"display_name": "1g now", "compute_slices": 1, "fallback": False},
}


def _full_state():
    state = ClusterState()
    state.apply_node_event(ADDED, node("a", mig=["1g.10gb"]))
    job = pod("job", namespace="ml", node="a", resources={"nvidia.com/mig-1g.10gb": 1})
    state.apply_pod_event(ADDED, job)
    return state


def _views(waiting=None):
    policy = build_policy(tiers=TIERS)
    profiles = build_profile_list(policy, _full_state(), user="ann", groups=[], waiting=waiting)
    return {p["slug"]: p["mig"] for p in profiles}, profiles


def test_a_full_tier_that_waits_is_selectable_and_says_where_you_would_stand():
    views, profiles = _views({"waits": 2})
    assert not views["waits"]["disabled"]
    assert views["waits"]["waiting"] == 2
    assert views["waits"]["available"] == "0 of 1 free · 2 waiting"
    assert views["waits"]["fallback_note"] == "none free: you wait #3 in line, up to 15 min"
    assert live_figures(profiles)["tiers"]["waits"]["waiting"] == 2
    # a tier without max_wait is refused for capacity, as without a line
    assert views["now"]["disabled"] and "Try again when a server stops" in views["now"]["reason"]
    assert views["now"]["waiting"] == 0


def test_an_empty_line_is_first_in_line_and_counts_change_the_form():
    views, _ = _views()
    assert views["waits"]["fallback_note"] == "none free: you wait first in line, up to 15 min"
    assert views["waits"]["available"] == "0 of 1 free"
    assert _views({"waits": 1})[0]["waits"]["available"] == "0 of 1 free · 1 waiting"
