"""The spawn form's profile_list (pure): what each tier gives and what is free, and its figures
computed once per state version, whoever opens it.
"""

from __future__ import annotations

from k8s_factories import node, pod

from mig_spawner.core import index
from mig_spawner.core.cluster import ADDED, MODIFIED, ClusterState
from mig_spawner.core.form import build_profile_list, live_figures, tier_profiles
from mig_spawner.core.policy import build_policy

POLICY = build_policy(
    tiers={
        "notebook": {
            "display_name": "1g notebook",
            "compute_slices": 1,
            "min_memory_gb": 10,
            "max_compute_slices": 3,
            "default": True,
        },
        "training": {"display_name": "3g training", "compute_slices": 3, "fallback": False},
        "full": {"display_name": "7g full GPU", "compute_slices": 7, "groups": ["vision"]},
    },
    team_quotas={"vision": {"compute_slices": 8}, "nlp": {"compute_slices": 2}},
)


def state_with(*pods):
    state = ClusterState()
    state.apply_node_event(ADDED, node("h", mig=["1g.10gb"] * 2 + ["2g.20gb", "3g.40gb"]))
    for p in pods:
        state.apply_pod_event(ADDED, p)
    return state


def test_profile_list_shows_what_each_tier_gives_and_what_is_free():
    profiles = build_profile_list(POLICY, state_with(), user="alice", groups=["vision"])
    assert [p["slug"] for p in profiles] == ["notebook", "training", "full"]
    nb = profiles[0]["mig"]
    assert nb["gives"] == "1 × 1g.10gb · 10 GB · 16 SMs on H100 80GB"
    assert nb["available"] == "2 of 2 free" and nb["fallback_note"] == ""
    assert nb["quota"] == "team vision: 0 of 8 compute slices in use"
    full = profiles[2]["mig"]
    assert full["disabled"] and "No GPU in this cluster fits" in full["reason"]
    assert profiles[0]["default"] and "profile_options" not in profiles[0]


def test_profile_list_fallback_note_and_disabled_tier():
    busy = [pod(f"b{i}", node="h", resources={"nvidia.com/mig-1g.10gb": 1}) for i in range(2)]
    busy.append(pod("t", node="h", resources={"nvidia.com/mig-3g.40gb": 1}))
    profiles = build_profile_list(POLICY, state_with(*busy), user="alice", groups=[])
    nb, training = profiles[0]["mig"], profiles[1]["mig"]
    assert nb["available"] == "0 of 2 free"
    assert nb["fallback_note"] == "none free: starts on 2g.20gb on H100 80GB"
    assert training["disabled"] and "No slice for '3g training' is free" in training["reason"]


def test_user_in_two_teams_picks_the_team_and_default_is_first_with_room():
    held = [
        pod(f"n{i}", node="h", resources={"nvidia.com/mig-1g.10gb": 1}, user="x", team="nlp")
        for i in range(2)
    ]
    policy = build_policy(
        tiers={"t": {"compute_slices": 1}},
        team_quotas={"nlp": {"compute_slices": 2}, "vision": {"servers": 3}},
    )
    (profile,) = build_profile_list(
        policy, state_with(*held), user="alice", groups=["nlp", "vision"]
    )
    choices = profile["profile_options"]["team"]["choices"]
    assert list(choices) == ["nlp", "vision"]
    assert choices["nlp"]["display_name"] == "nlp (2 of 2 compute slices in use)"
    assert choices["vision"]["default"] and not choices["nlp"]["default"]


def test_unknown_availability_is_said_not_guessed():
    profiles = build_profile_list(
        POLICY,
        ClusterState(),
        user="a",
        groups=[],
        known=False,
        problem="the hub cannot read the cluster",
    )
    assert profiles[0]["mig"]["available"] == "availability unknown"
    assert profiles[0]["mig"]["reason"] == "the hub cannot read the cluster"
    assert not profiles[0]["mig"]["disabled"]


def test_static_tier_profiles_carry_overrides_and_team_choices_without_live_figures():

    policy = build_policy(
        tiers={"t": {"kubespawner_override": {"image": "x:1"}}, "v": {"groups": ["vision"]}},
        team_quotas={"nlp": {}, "vision": {}},
    )
    (t,) = tier_profiles(policy, ["nlp"])
    assert t["kubespawner_override"] == {"image": "x:1"} and "mig" not in t
    assert "profile_options" not in t  # one team: nothing to pick
    both = tier_profiles(policy, ["vision", "nlp"])
    assert [p["slug"] for p in both] == ["t", "v"]
    assert list(both[0]["profile_options"]["team"]["choices"]) == ["nlp", "vision"]


# ----------------------------------------------------------------------------------------
# The form's figures are computed once per state version, whoever opens it.


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
