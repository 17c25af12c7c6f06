"""The form's figures are computed once per state version, whoever opens it."""

from __future__ import annotations

from k8s_factories import node, pod

from mig_spawner.core import index
from mig_spawner.core.cluster import ADDED, MODIFIED, ClusterState
from mig_spawner.core.form import build_profile_list, live_figures
from mig_spawner.core.policy import build_policy

TIERS = {
    "notebook": {"display_name": "1g", "compute_slices": 1, "min_memory_gb": 10},
    "training": {"display_name": "3g", "compute_slices": 3, "min_memory_gb": 40},
}


def _state():
    state = ClusterState()
    state.apply_node_event(ADDED, node("a", mig=["1g.10gb"] * 7))
    state.apply_node_event(ADDED, node("b", mig=["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]))
    return state


def test_a_hundred_users_after_one_change_cost_one_computation(monkeypatch):
    policy = build_policy(tiers=TIERS, team_quotas={"vision": {"compute_slices": 8}})
    state = _state()
    build_profile_list(policy, state, user="warm", groups=["vision"])  # builds the indexes
    calls = []
    real_best = index.SliceIndex.best
    monkeypatch.setattr(
        index.SliceIndex, "best", lambda self, *a: calls.append(1) or real_best(self, *a)
    )

    job = pod("job", namespace="ml", node="a", resources={"nvidia.com/mig-1g.10gb": 1})
    state.apply_pod_event(ADDED, job)
    forms = [
        build_profile_list(policy, state, user=f"user{i}", groups=["vision"]) for i in range(100)
    ]
    # one look at each candidate of each tier's chain, not one per user
    rows = {"notebook": 3, "training": 1}  # 1g.10gb, 2g.20gb, 3g.40gb / 3g.40gb
    assert len(calls) == sum(rows.values())
    assert all(f[0]["mig"]["available"] == "8 of 9 free" for f in forms)

    # the next change is seen at once
    job["status"]["phase"] = "Succeeded"
    state.apply_pod_event(MODIFIED, job)
    again = build_profile_list(policy, state, user="user0", groups=["vision"])
    assert again[0]["mig"]["available"] == "9 of 9 free"
    assert len(calls) == 2 * sum(rows.values())


def test_each_call_gets_its_own_copy_and_live_figures_carry_only_the_users_teams():
    policy = build_policy(
        tiers=TIERS,
        team_quotas={"vision": {"compute_slices": 8}, "nlp": {"compute_slices": 4}},
    )
    state = _state()
    first = build_profile_list(policy, state, user="alice", groups=["vision", "nlp"])
    first[0]["mig"]["available"] = "tampered"  # KubeSpawner fills in profiles in place
    second = build_profile_list(policy, state, user="alice", groups=["vision", "nlp"])
    assert second[0]["mig"]["available"] == "9 of 9 free"
    figures = live_figures(second)
    assert set(figures["tiers"]["notebook"]["teams"]) == {"vision", "nlp"}
    carol = live_figures(build_profile_list(policy, state, user="carol", groups=["nlp"]))
    assert carol["tiers"]["notebook"]["teams"] == {}  # one team: no picker
    assert "vision" not in str(carol)
