"""User options validation and the generated profile_list (both pure)."""

import pytest
from k8s_factories import node, pod

from mig_spawner.core.admission import SpawnRequest, decide
from mig_spawner.core.cluster import ADDED, ClusterState
from mig_spawner.core.form import build_profile_list, tier_profiles
from mig_spawner.core.options import OptionsError, SpawnOptions, parse_options
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


def parse(options, groups=()):
    return parse_options(options, tier_profiles(POLICY, groups), POLICY.tiers)


def test_form_and_rest_shapes_are_accepted():
    assert parse({"profile": "notebook"}, ["vision"]) == SpawnOptions("notebook", "notebook")
    assert parse({"tier": "full", "team": "vision"}, ["vision"]) == SpawnOptions(
        "full", "full", "vision"
    )
    assert parse({}).tier == "notebook"  # the default tier
    assert parse(None).as_user_options() == {"profile": "notebook"}
    # the server record mig-spawner writes into user_options is not a request
    assert parse({"profile": "notebook", "mig": {"slice": "1g.10gb"}}).tier == "notebook"


@pytest.mark.parametrize(
    "options, fragment",
    [
        # issue 19: refused as a key the user may not set, not as "must be a string"
        (
            {"tier": "notebook", "extra_resource_limits": {"nvidia.com/gpu": 8}},
            "accepts no 'extra_resource_limits'; it accepts: ",
        ),
        ({"tier": "notebook", "cpu_limit": 64}, "Resources, node selectors and overrides"),
        ({"tier": "notebook", "node_selector": "a=b"}, "accepts no 'node_selector'"),
        ({"tier": "notebook", "kubespawner_override": "x"}, "overrides are set by the hub"),
        ({"profile": "huge"}, "There is no profile 'huge'"),
        ({"tier": "notebook", "profile": "training"}, "disagree"),
        ({"tier": 3}, "user_options['tier'] must be a string, not int"),
        (["notebook"], "JSON object"),
    ],
)
def test_forged_options_are_refused(options, fragment):
    with pytest.raises(OptionsError) as err:
        parse(options)
    assert err.value.status == 400 and fragment in str(err.value)
    assert "must be a string" not in str(err.value) or "'tier'" in str(err.value)


@pytest.mark.parametrize(
    "options, groups, code, fragment",
    [
        ({"tier": "huge"}, [], "unknown-tier", "There is no tier 'huge'"),
        ({"tier": "full"}, ["nlp"], "forbidden-tier", "only for members of vision"),
        ({"profile": "full"}, ["nlp"], "forbidden-tier", "only for members of vision"),
        ({"tier": "notebook", "team": "vision"}, ["nlp"], "not-in-team", "not a member"),
        ({"tier": "notebook", "team": "misc"}, ["misc"], "not-in-team", "has no GPU quota"),
    ],
)
def test_visibility_and_membership_are_decided_once_by_decide(options, groups, code, fragment):
    """options checks shape only; the same request reaches decide(), which refuses."""
    opts = parse(options, groups)
    request = SpawnRequest(user="u", tier=opts.tier, groups=tuple(groups), team=opts.team)
    d = decide(request, POLICY, state_with())
    assert not d.admitted and d.code == code and fragment in d.message


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
    from mig_spawner.core.form import tier_profiles

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
