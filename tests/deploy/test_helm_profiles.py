"""singleuser.profileList beside the tiers, as the chart hands them to the hub.

The cpu-and-images variant keeps an admin's own profiles (a CPU-only profile, a GPU
profile with an image choice and a free-text image); the hub must offer them first, then
every tier none of them asks for, and take the GPU request from the tier alone.
"""

from __future__ import annotations

from z2jh_values import BASE_VALUES, DEPLOYMENTS, chart_values, hub_config

from mig_spawner.core.form import tier_profiles
from mig_spawner.core.options import parse_options


def spawner_for(*paths):
    from mig_spawner import MIGSpawner

    return MIGSpawner(config=hub_config(chart_values(*paths)), _mock=True)


async def test_own_profiles_come_first_then_the_tiers_no_profile_asks_for():
    spawner = spawner_for(*DEPLOYMENTS["cpu-and-images"])
    own = spawner.profile_list
    assert [p["slug"] for p in own] == ["cpu", "gpu-notebook"]
    profiles = spawner._get_initialized_profile_list(tier_profiles(spawner.policy, ["vision"], own))
    assert [p["slug"] for p in profiles] == ["cpu", "gpu-notebook", "training", "full"]
    image = profiles[1]["profile_options"]["image"]
    assert list(image["choices"]) == ["pytorch", "tensorflow"]
    assert image["unlisted_choice"]["kubespawner_override"] == {"image": "{value}"}
    # the REST shapes an operator's users send
    tiers = tuple(spawner.policy.tiers)
    cpu = parse_options({"profile": "cpu"}, profiles, tiers)
    assert (cpu.profile, cpu.tier) == ("cpu", None)
    gpu = parse_options({"tier": "notebook", "image": "tensorflow"}, profiles, tiers)
    assert (gpu.profile, gpu.tier, gpu.choices["image"]) == (
        "gpu-notebook",
        "notebook",
        "tensorflow",
    )


async def test_the_charts_empty_profile_list_means_none_of_my_own():
    spawner = spawner_for(BASE_VALUES)
    assert spawner.profile_list == []  # the chart's default singleuser.profileList: []
    profiles = tier_profiles(spawner.policy, ["vision"], spawner.profile_list)
    assert [p["slug"] for p in profiles] == ["notebook", "training", "full"]
