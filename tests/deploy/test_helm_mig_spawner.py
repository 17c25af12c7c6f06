"""The hub configuration each deployment produces loads through mig-spawner itself.

(b) the MIGSpawner settings pass the core's validation (mig_spawner.core.policy.build_policy);
(c) a MIGSpawner built from the chart-generated Config exposes exactly those settings, and
    JupyterHub resolves `spawner_class: mig` to it.
"""

from __future__ import annotations

import pytest
from z2jh_values import (
    BASE_VALUES,
    DEPLOYMENTS,
    POLICY_KEYS,
    chart_values,
    hub_config,
    mig_settings,
    root_config,
)


def helm_config(name: str):
    return hub_config(chart_values(*DEPLOYMENTS[name]))


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_policy_builds_from_the_helm_values(name):
    from mig_spawner.core.policy import ConfigError, build_policy

    settings = mig_settings(helm_config(name))
    policy = build_policy(**settings)
    assert set(policy.tiers) == set(settings["tiers"])
    # The same check turns a broken value into an error, so a bad file cannot slip through.
    with pytest.raises(ConfigError):
        build_policy(**{**settings, "charge": "whatever-was-asked"})


@pytest.mark.parametrize("name", DEPLOYMENTS)
async def test_spawner_exposes_the_helm_values(name):
    from mig_spawner import MIGSpawner

    cfg = helm_config(name)
    # A misspelt key would only be a traitlets warning at startup; here it fails.
    assert set(cfg.MIGSpawner) <= set(MIGSpawner.class_trait_names(config=True))
    spawner = MIGSpawner(config=cfg, _mock=True)
    for key, value in mig_settings(cfg).items():
        assert getattr(spawner, key) == value, key
    assert spawner.image == cfg.KubeSpawner.image
    assert spawner.node_selector == cfg.KubeSpawner.node_selector
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
        spawner.tolerations
    )


async def test_spawner_from_helm_equals_spawner_from_the_root_example():
    from mig_spawner import MIGSpawner

    helm = MIGSpawner(config=hub_config(chart_values(BASE_VALUES)), _mock=True)
    root = MIGSpawner(config=root_config(), _mock=True)
    traits = [k for k in POLICY_KEYS if k in root_config().MIGSpawner]
    for trait in (*traits, "image", "cpu_guarantee", "mem_guarantee", "start_timeout"):
        assert getattr(helm, trait) == getattr(root, trait), trait


def test_jupyterhub_resolves_spawner_class_mig():
    from jupyterhub.app import JupyterHub

    from mig_spawner import MIGSpawner

    hub = JupyterHub(config=hub_config(chart_values(BASE_VALUES)))
    assert hub.spawner_class is MIGSpawner
