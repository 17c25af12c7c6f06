"""User options validation (pure): the form's and the REST API's shapes, forged options."""

from __future__ import annotations

import pytest
from k8s_factories import node

from mig_spawner.core.admission import SpawnRequest, decide
from mig_spawner.core.cluster import ADDED, ClusterState
from mig_spawner.core.form import tier_profiles
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
