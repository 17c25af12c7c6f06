"""How the admin's own profile_list and the tiers combine (core.profiles, pure)."""

import pytest

from mig_spawner.core.policy import ConfigError, build_policy
from mig_spawner.core.profiles import combine, profile_for_tier, tier_of

POLICY = build_policy(
    tiers={
        "notebook": {"display_name": "1g notebook", "compute_slices": 1},
        "training": {"display_name": "3g training", "compute_slices": 3},
        "full": {"display_name": "7g full GPU", "compute_slices": 7, "groups": ["vision"]},
    },
    team_quotas={"vision": {"compute_slices": 8}, "nlp": {"compute_slices": 4}},
)
CPU = {"display_name": "CPU", "slug": "cpu", "kubespawner_override": {"cpu_limit": 2}}
SIZES = {
    "display_name": "GPU",
    "slug": "gpu",
    "profile_options": {
        "size": {
            "display_name": "Size",
            "choices": {
                "small": {"display_name": "1g", "mig_tier": "notebook"},
                "big": {"display_name": "7g", "mig_tier": "full"},
            },
        },
        "image": {"display_name": "Image", "choices": {"py": {"display_name": "Python"}}},
    },
}


def slugs(profiles):
    return [p["slug"] for p in profiles]


def test_own_profiles_first_then_tiers_nobody_asks_for():
    assert slugs(combine([CPU], POLICY, ["vision"])) == ["cpu", "notebook", "training", "full"]
    assert slugs(combine([CPU, SIZES], POLICY, ["vision"])) == ["cpu", "gpu", "training"]
    assert slugs(combine([], POLICY, [])) == ["notebook", "training"]  # [] = none of my own


def test_a_choice_whose_tier_the_user_may_not_see_is_left_out():
    (gpu,) = [p for p in combine([SIZES], POLICY, ["nlp"]) if p["slug"] == "gpu"]
    assert list(gpu["profile_options"]["size"]["choices"]) == ["small"]
    (gpu,) = [p for p in combine([SIZES], POLICY, ["vision"]) if p["slug"] == "gpu"]
    assert list(gpu["profile_options"]["size"]["choices"]) == ["small", "big"]


def test_the_chosen_choice_decides_the_tier_and_cpu_profiles_have_none():
    assert tier_of(SIZES, {"size": "big"}) == "full"
    assert tier_of(SIZES, {}) == "notebook"  # the first choice, as KubeSpawner defaults
    assert tier_of(CPU, {}) is None
    assert profile_for_tier([CPU, SIZES], "full") == (SIZES, {"size": "big"})
    assert profile_for_tier([CPU], "full") is None


def test_team_picker_only_on_profiles_that_need_a_gpu():
    profiles = {p["slug"]: p for p in combine([CPU, SIZES], POLICY, ["vision", "nlp"])}
    assert "profile_options" not in profiles["cpu"]
    assert list(profiles["gpu"]["profile_options"]["team"]["choices"]) == ["vision", "nlp"]
    assert "team" in profiles["training"]["profile_options"]


def test_the_input_is_not_modified():
    before = repr(SIZES)
    combine([SIZES], POLICY, ["vision", "nlp"])
    assert repr(SIZES) == before


@pytest.mark.parametrize(
    "profile, fragment",
    [
        ({"slug": "x", "display_name": "X", "mig_tier": "huge"}, "mig_tier 'huge'"),
        ({"slug": "notebook", "display_name": "N"}, "has the slug of a tier"),
        (
            {
                "slug": "x",
                "display_name": "X",
                "mig_tier": "notebook",
                "kubespawner_override": {"extra_resource_limits": {"nvidia.com/gpu": 1}},
            },
            "may not set extra_resource_limits",
        ),
        (
            {
                "slug": "x",
                "display_name": "X",
                "profile_options": {
                    "size": {
                        "choices": {
                            "a": {
                                "mig_tier": "notebook",
                                "kubespawner_override": {"node_selector": {}},
                            }
                        }
                    }
                },
            },
            "profile_list['x'].size.a needs a GPU",
        ),
        (
            {
                "slug": "x",
                "display_name": "X",
                "mig_tier": "notebook",
                "profile_options": {"team": {"choices": {"a": {}}}},
            },
            "profile option named 'team'",
        ),
    ],
)
def test_a_profile_list_that_does_not_fit_the_tiers_is_a_config_error(profile, fragment):
    with pytest.raises(ConfigError) as err:
        combine([profile], POLICY, ["vision"])
    assert fragment in str(err.value)


def test_a_cpu_profile_may_set_its_own_placement():
    cpu = {**CPU, "kubespawner_override": {"node_selector": {"pool": "cpu"}}}
    assert slugs(combine([cpu], POLICY, []))[0] == "cpu"
