"""helm-values/: every deployment validates against the Z2JH 4.4.0 chart and configures mig-spawner.

A "deployment" is values.yaml alone, or values.yaml plus one variant, merged over the chart's
defaults the way Helm does (see z2jh_values.py), then turned into hub configuration the way the
chart's jupyterhub_config.py does.
"""

from __future__ import annotations

import copy
import json
import re
from importlib.metadata import entry_points

import jsonschema
import pytest
from traitlets.config import Config
from z2jh_values import (
    BASE_VALUES,
    CHART_DEFAULTS,
    CHART_SCHEMA,
    DEPLOYMENTS,
    HELM_VALUES,
    SHARED,
    VARIANTS,
    chart_values,
    coalesce,
    hub_config,
    load_yaml,
    merge_value_files,
    mig_settings,
    nulls_outside_chart_defaults,
    profile_size,
    root_config,
)

SCHEMA_VALIDATOR = jsonschema.Draft7Validator(json.loads(CHART_SCHEMA.read_text()))
GPU_TAINTS = (
    {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},  # GKE
    {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"},  # AKS
    {"key": "nvidia.com/gpu", "effect": "NoSchedule"},
)


def schema_errors(values) -> list[str]:
    return sorted(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in SCHEMA_VALIDATOR.iter_errors(values)
    )


def deployment(name: str):
    """(chart values, hub Config, MIGSpawner settings) for one deployment."""
    values = chart_values(*DEPLOYMENTS[name])
    cfg = hub_config(values)
    return values, cfg, mig_settings(cfg)


def reference_gpus() -> dict:
    return {g["key"]: g for g in load_yaml(SHARED / "reference" / "mig-profiles.yaml")["gpus"]}


def plain_profiles(gpu) -> list[str]:
    return [p["name"] for p in gpu["profiles"] if re.fullmatch(r"\dg\.\d+gb", p["name"])]


def fits(tier, profile: str) -> bool:
    """Whether a MIG profile satisfies a tier's size bounds (as the tier's fields state them)."""
    g, gb = profile_size(profile)
    ceiling = tier.get("max_compute_slices", 7 if tier.get("fallback", True) else None)
    ceiling = tier["compute_slices"] if ceiling is None else ceiling
    return tier["compute_slices"] <= g <= ceiling and gb >= tier.get("min_memory_gb", 0)


def tolerates(toleration, taint) -> bool:
    """Kubernetes' rule for whether a toleration matches a taint."""
    if toleration.get("effect") and toleration["effect"] != taint["effect"]:
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint["key"]
    return toleration.get("key") == taint["key"] and toleration.get("value", "") == taint.get(
        "value", ""
    )


# ------------------------------------------------------------------ the Helm merge model


def test_helm_merge_model_merges_maps_replaces_lists_and_deletes_with_null():
    user = merge_value_files(
        {"a": {"x": 1, "l": [1, 2]}, "s": 1}, {"a": {"y": 2, "l": [3]}, "s": None}
    )
    assert user == {"a": {"x": 1, "y": 2, "l": [3]}, "s": None}
    defaults = {"a": {"x": 0, "z": 9}, "s": 5, "keep": {"k": None}}
    assert coalesce(user, defaults) == {
        "a": {"x": 1, "y": 2, "l": [3], "z": 9},
        "keep": {"k": None},
    }
    # A null deletes a chart default; one for a key the chart lacks survives (current Helm).
    assert coalesce({"a": {"z": None, "new": None}}, defaults)["a"] == {"x": 0, "new": None}


# ---------------------------------------------------------------- the chart's values schema


def test_chart_defaults_alone_pass_the_schema():
    assert schema_errors(coalesce({}, load_yaml(CHART_DEFAULTS))) == []


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_deployment_passes_the_charts_values_schema(name):
    assert schema_errors(chart_values(*DEPLOYMENTS[name])) == []


def test_schema_rejects_mistakes_helm_would_reject():
    values = chart_values(BASE_VALUES)
    lowercase_section = copy.deepcopy(values)
    lowercase_section["hub"]["config"]["migSpawner"] = {"charge": "granted"}
    untagged_image = copy.deepcopy(values)
    del untagged_image["hub"]["image"]["tag"]
    toleration_not_list = copy.deepcopy(values)
    toleration_not_list["singleuser"]["extraTolerations"] = {"key": "nvidia.com/gpu"}
    for bad in (lowercase_section, untagged_image, toleration_not_list):
        assert schema_errors(bad), "the chart schema should have rejected this"


@pytest.mark.parametrize(
    "path",
    [BASE_VALUES, *VARIANTS.values(), HELM_VALUES / "umbrella" / "values.yaml"],
    ids=lambda p: p.name if p.parent.name != "umbrella" else "umbrella",
)
def test_nulls_only_delete_chart_defaults(path):
    # A null for a key the chart does not define reaches JupyterHub as None in newer Helm.
    values = load_yaml(path)
    if path.parent.name == "umbrella":
        values = values["jupyterhub"]
    assert nulls_outside_chart_defaults(values) == []


# ------------------------------------------------------- same configuration as the root example


def test_mig_settings_equal_the_root_example():
    root = mig_settings(root_config())
    assert {"tiers", "team_quotas", "default_quota", "charge"} <= set(root)
    _, _, helm = deployment("base")
    assert helm == root


def test_user_pod_settings_equal_the_root_example():
    root = root_config()
    _, helm, _ = deployment("base")
    for trait in ("image", "cpu_guarantee", "mem_guarantee", "start_timeout"):
        assert helm.KubeSpawner[trait] == root.KubeSpawner[trait], trait
    assert helm.JupyterHub.spawner_class == root.JupyterHub.spawner_class == "mig"


def test_spawner_class_mig_is_this_packages_entry_point():
    (ep,) = [ep for ep in entry_points(group="jupyterhub.spawners") if ep.name == "mig"]
    assert ep.value == "mig_spawner:MIGSpawner"
    for name in DEPLOYMENTS:
        assert deployment(name)[1].JupyterHub.spawner_class == "mig"


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_user_pods_tolerate_gpu_node_taints(name):
    _, cfg, _ = deployment(name)
    for taint in GPU_TAINTS:
        assert any(tolerates(t, taint) for t in cfg.KubeSpawner.tolerations), taint


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_node_selectors_are_string_labels(name):
    values, _, mig = deployment(name)
    selectors = [values["singleuser"]["nodeSelector"]]
    selectors += [t.get("node_selector", {}) for t in mig["tiers"].values()]
    for selector in selectors:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in selector.items())
    assert values["singleuser"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_gpus_are_left_to_mig_spawner(name):
    _, cfg, _ = deployment(name)
    resources = {**cfg.KubeSpawner.get("extra_resource_limits", {})}
    resources |= cfg.KubeSpawner.get("extra_resource_guarantees", {})
    assert not [r for r in resources if r.startswith("nvidia.com/")]
    # an admin's own profiles (singleuser.profileList) never request a GPU themselves
    for profile in cfg.KubeSpawner.get("profile_list") or []:
        assert "nvidia.com/" not in repr(profile.get("kubespawner_override", {}))


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_managed_groups_never_meet_load_groups(name):
    # JupyterHub refuses to start: "Group management has been offloaded to the authenticator".
    _, cfg, _ = deployment(name)
    managed = any(cfg[s].get("manage_groups") for s in cfg if s.endswith("Authenticator"))
    assert not (managed and cfg.JupyterHub.get("load_groups"))


# ----------------------------------------------------------------------------- the variants


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_only_adjusts_the_base_tiers_and_teams(name):
    # Helm merges maps: a tier slug that the base lacks would be offered *in addition*.
    base = load_yaml(BASE_VALUES)["hub"]["config"]["MIGSpawner"]
    variant = load_yaml(VARIANTS[name]).get("hub", {}).get("config", {}).get("MIGSpawner", {})
    assert set(variant.get("tiers", {})) <= set(base["tiers"])
    assert set(variant.get("fallback_chains", {})) <= set(base["tiers"])


def test_single_strategy_pins_each_tier_to_its_node_pool():
    _, _, mig = deployment("single-strategy")
    gpus = reference_gpus().values()
    for slug, tier in mig["tiers"].items():
        product = tier["node_selector"]["nvidia.com/gpu.product"]
        model, mig_marker, profile = product.partition("-MIG-")
        (gpu,) = [g for g in gpus if model in g["gfd_gpu_product"]]
        assert tier["fallback"] is False, slug
        if mig_marker:  # a MIG pool: GFD's single-strategy label names the profile
            assert profile in plain_profiles(gpu), product
            assert fits(tier, profile), (slug, profile)
            assert tier["max_compute_slices"] == profile_size(profile)[0]
        else:  # MIG disabled: whole GPUs
            assert tier["compute_slices"] == 7, slug


def test_mixed_cluster_tiers_resolve_on_both_gpu_models():
    _, _, mig = deployment("mixed-a100-h100")
    gpus = reference_gpus()
    models = [gpus["a100-40gb"], gpus["h100-80gb"]]
    for slug, tier in mig["tiers"].items():
        for gpu in models:
            assert any(fits(tier, p) for p in plain_profiles(gpu)), (slug, gpu["key"])
    chains = mig["fallback_chains"]
    assert set(chains) == {"notebook", "training"}
    known = {p for gpu in models for p in plain_profiles(gpu)}
    for slug, chain in chains.items():
        tier = mig["tiers"][slug]
        assert len(set(chain)) == len(chain)
        assert all(p in known and fits(tier, p) for p in chain), slug
        steps = tier.get("max_fallback_steps")
        assert steps is None or steps >= len(chain) - 1, f"{slug}: chain entries out of reach"
    # With the GPU Operator's all-balanced layout, both chains find a slice on both models.
    balanced = load_yaml(SHARED / "reference" / "mig-profiles.yaml")["mig_parted_default_config"]
    for gpu in models:
        ids = set(gpu["mig_parted_device_ids"])
        (entry,) = [
            e
            for e in balanced["configs"]["all-balanced"]["entries"]
            if ids & {f.split()[0] for f in e["device_filter"]}
        ]
        for slug, chain in chains.items():
            assert set(chain) & set(entry["mig_devices"]), (slug, gpu["key"])


def test_oauth_teams_come_from_the_identity_provider():
    values, _, mig = deployment("oauth-teams")
    hub_cfg = values["hub"]["config"]
    auth = hub_cfg["GenericOAuthenticator"]
    assert hub_cfg["JupyterHub"]["authenticator_class"] == "generic-oauth"
    assert auth["manage_groups"] is True
    assert auth["auth_state_groups_key"] == "oauth_user.groups"
    assert "groups" in auth["scope"]
    idp_teams = set(
        load_yaml(VARIANTS["oauth-teams"])["hub"]["config"]["MIGSpawner"]["team_quotas"]
    )
    assert idp_teams and idp_teams <= set(mig["team_quotas"])
    assert idp_teams <= set(auth["allowed_groups"])
    for slug, tier in mig["tiers"].items():
        assert set(tier.get("groups", [])) <= idp_teams, slug
    # No OAuth secret in a values file: it comes from a Kubernetes Secret.
    assert "client_secret" not in auth
    secret_env = values["hub"]["extraEnv"]["OAUTH_CLIENT_SECRET"]
    assert set(secret_env["valueFrom"]["secretKeyRef"]) == {"name", "key"}


def test_the_service_is_configured_as_in_the_root_example():
    """mig-spawner's service (hub/service.py): started from hub.extraConfig with the chart's
    config file, the roles of service.roles(), and port 10101 open from proxy to hub."""
    from mig_spawner.hub.service import PORT, SETTINGS_ENV, roles

    values, _, _ = deployment("base")
    hub = values["hub"]
    snippet = hub["extraConfig"]["mig-spawner-service"]
    assert "service(c, " in snippet  # the settings as the chart's hub has them
    assert f":{PORT}" in snippet and "get_name('hub')" in snippet
    loaded = {name: dict(role) for name, role in hub["loadRoles"].items()}
    for role in roles():
        expected = {k: v for k, v in role.items() if k != "name"}
        assert loaded[role["name"]] == expected, role["name"]
    assert [p["port"] for p in hub["service"]["extraPorts"]] == [PORT]
    assert [p["port"] for r in hub["networkPolicy"]["ingress"] for p in r["ports"]] == [PORT]
    egress = values["proxy"]["chp"]["networkPolicy"]["egress"]
    assert [p["port"] for r in egress for p in r["ports"]] == [PORT]
    # the root example runs the same service
    root = root_config()
    (service,) = root.JupyterHub.services
    assert service["name"] == "mig" and service["command"][1:] == ["-m", "mig_spawner.hub.service"]
    settings = json.loads(service["environment"][SETTINGS_ENV])
    assert settings["MIGSpawner"]["tiers"] == root.MIGSpawner.tiers  # read after the tiers
    assert root.JupyterHub.load_roles == roles()


def test_the_home_page_is_installed_as_in_the_root_example():
    """hub.extraConfig's home-page entry, run as the chart runs it (after hub.templatePaths
    became c.JupyterHub.template_paths): our home.html first, the operator's paths and
    variables kept; the root example installs the same."""
    from mig_spawner.hub.homepage import (
        HOME_TEMPLATES,
        RECLAIM_VAR,
        TEMPLATE_VAR,
        give_back_notices,
        reclaim_notices,
    )

    ours = {TEMPLATE_VAR: give_back_notices, RECLAIM_VAR: reclaim_notices}

    values, _, _ = deployment("base")
    snippet = values["hub"]["extraConfig"]["mig-spawner-home-page"]
    c = Config()
    c.JupyterHub.template_paths = ["/usr/local/share/jupyterhub/custom"]  # hub.templatePaths
    c.JupyterHub.template_vars = {"org": "ACME"}  # hub.templateVars
    exec(compile(snippet, "hub.extraConfig.mig-spawner-home-page", "exec"), {"c": c})
    assert c.JupyterHub.template_paths == [HOME_TEMPLATES, "/usr/local/share/jupyterhub/custom"]
    assert c.JupyterHub.template_vars == {"org": "ACME", **ours}
    root = root_config()
    assert root.JupyterHub.template_paths == [HOME_TEMPLATES]
    assert root.JupyterHub.template_vars == ours
