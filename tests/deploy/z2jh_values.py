"""How Helm and the Zero to JupyterHub chart turn values files into hub configuration.

A small, explicit model for the deployment tests, written from these sources:

* Helm merges ``-f`` files in order: maps merge recursively, anything else is replaced, and a
  ``null`` is kept (helm ``pkg/cli/values/options.go``: ``mergeMaps``).
* Helm then coalesces the result over the chart's ``values.yaml`` (helm
  ``pkg/chart/common/util/coalesce.go``): user values win, maps merge, and a user ``null``
  deletes the key when the chart defines it. A ``null`` for a key the chart does *not*
  define is kept by current Helm (older Helm 3 deleted it too), so our files never rely on
  that (see ``nulls_outside_chart_defaults``).
* The chart's ``jupyterhub_config.py`` sets KubeSpawner traits from ``singleuser.*`` and then
  applies ``hub.config`` with ``c[section].update(sub_cfg)``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
HELM_VALUES = ROOT / "helm-values"
CHART_DEFAULTS = SHARED / "z2jh" / "values.yaml"
CHART_SCHEMA = SHARED / "z2jh" / "values.schema.json"
CHART_VERSION = "4.4.0"

BASE_VALUES = HELM_VALUES / "values.yaml"
VARIANTS = {
    "single-strategy": HELM_VALUES / "values-single-strategy.yaml",
    "mixed-a100-h100": HELM_VALUES / "values-mixed-a100-h100.yaml",
    "oauth-teams": HELM_VALUES / "values-oauth-teams.yaml",
    "cpu-and-images": HELM_VALUES / "values-cpu-and-images.yaml",
    "kueue": HELM_VALUES / "values-kueue.yaml",
}
#: Every deployment an operator can make from helm-values/: the base file, or base + a variant.
DEPLOYMENTS: dict[str, tuple[Path, ...]] = {
    "base": (BASE_VALUES,),
    **{name: (BASE_VALUES, path) for name, path in VARIANTS.items()},
}

#: MIGSpawner settings that build_policy() takes, as keyword arguments.
POLICY_KEYS = ("tiers", "fallback_chains", "team_quotas", "default_quota", "charge")


def load_yaml(path: Path) -> Any:
    with open(path) as f:
        return yaml.safe_load(f)


# ------------------------------------------------------------------------------- Helm merge


def merge_value_files(*maps: Mapping[str, Any]) -> dict[str, Any]:
    """``helm -f a.yaml -f b.yaml``: later files win, maps merge, nulls are kept."""
    out: dict[str, Any] = {}
    for m in maps:
        out = _merge_maps(out, m)
    return out


def _merge_maps(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge_maps(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def coalesce(user: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's CoalesceValues for a top-level chart: the values its templates see."""
    dst = copy.deepcopy(dict(user))
    for key, default in copy.deepcopy(dict(defaults)).items():
        if key not in dst:
            dst[key] = default
        elif dst[key] is None:
            del dst[key]  # a user null removes a top-level key
        elif isinstance(dst[key], dict) and isinstance(default, dict):
            _coalesce_tables(dst[key], default)
    return dst


def _coalesce_tables(dst: dict[str, Any], src: dict[str, Any]) -> None:
    src_non_null = {k for k, v in src.items() if v is not None}
    for key, value in list(dst.items()):
        if value is None:
            src[key] = None
    for key, default in src.items():
        if key in dst and dst[key] is None and key in src_non_null:
            del dst[key]  # the user nullified a chart default
        elif key not in dst:
            dst[key] = default
        elif isinstance(default, dict) and isinstance(dst[key], dict):
            _coalesce_tables(dst[key], default)


def chart_values(*files: Path) -> dict[str, Any]:
    """The chart's effective values for ``helm upgrade -f files[0] -f files[1] ...``."""
    return coalesce(merge_value_files(*(load_yaml(f) for f in files)), load_yaml(CHART_DEFAULTS))


def leaves(tree: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (path, value) whose value is not a non-empty map."""
    if isinstance(tree, Mapping) and tree:
        for key, value in tree.items():
            yield from leaves(value, (*path, str(key)))
    else:
        yield path, tree


def lookup(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(tree, Mapping) or key not in tree:
            raise KeyError(".".join(path))
        tree = tree[key]
    return tree


#: MIGSpawner settings in which mig-spawner reads a null as absent (docs/deploy-z2jh.md, "How
#: Helm layers values files"): there older Helm's deleting the key and newer Helm's passing
#: None have the same effect, so a variant may remove an entry of values.yaml with a null.
NULL_MEANS_ABSENT = tuple(
    ("hub", "config", "MIGSpawner", key)
    for key in ("tiers", "fallback_chains", "team_quotas", "default_quota")
)


def nulls_outside_chart_defaults(values: Mapping[str, Any]) -> list[str]:
    """Paths where a values file says null but the chart has no non-null default to delete
    (and mig-spawner does not read it as absent)."""
    defaults = load_yaml(CHART_DEFAULTS)
    bad = []
    for path, value in leaves(values):
        if value is None and not any(tuple(path[: len(p)]) == p for p in NULL_MEANS_ABSENT):
            try:
                default = lookup(defaults, path)
            except KeyError:
                default = None
            if default is None:
                bad.append(".".join(path))
    return bad


# ------------------------------------------------------------- the chart's jupyterhub_config


def hub_config(values: Mapping[str, Any]) -> Config:
    """The part of the chart's jupyterhub_config.py that decides the spawner's settings.

    Mirrors the chart: singleuser.* become KubeSpawner traits (only where not null), then
    every hub.config section is applied with ``c[section].update(...)``.
    """
    c = Config()
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    su = values["singleuser"]
    for trait, value in (
        ("start_timeout", su.get("startTimeout")),
        ("node_selector", su.get("nodeSelector")),
        ("mem_limit", su.get("memory", {}).get("limit")),
        ("mem_guarantee", su.get("memory", {}).get("guarantee")),
        ("cpu_limit", su.get("cpu", {}).get("limit")),
        ("cpu_guarantee", su.get("cpu", {}).get("guarantee")),
        ("extra_resource_limits", su.get("extraResource", {}).get("limits")),
        ("extra_resource_guarantees", su.get("extraResource", {}).get("guarantees")),
        ("profile_list", su.get("profileList")),
        ("storage_capacity", su.get("storage", {}).get("capacity")),
    ):
        if value is not None:
            c.KubeSpawner[trait] = value
    image = su["image"]["name"]
    if su["image"].get("tag"):
        image = f"{image}:{su['image']['tag']}"
    c.KubeSpawner.image = image
    tolerations = values["scheduling"]["userPods"]["tolerations"] + su.get("extraTolerations", [])
    if tolerations:
        c.KubeSpawner.tolerations = tolerations
    c.KubeSpawner.volumes = list(su["storage"].get("extraVolumes") or [])
    c.KubeSpawner.volume_mounts = list(su["storage"].get("extraVolumeMounts") or [])
    for section, sub_cfg in copy.deepcopy(values["hub"]["config"]).items():
        c[section].update(sub_cfg)
    return c


def root_config() -> Config:
    """The root example jupyterhub_config.py, loaded the way JupyterHub loads it."""
    cfg = Config()
    path = ROOT / "jupyterhub_config.py"
    # traitlets binds __file__ too
    namespace = {"get_config": lambda: cfg, "__file__": str(path)}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return cfg


def mig_settings(cfg: Config) -> dict[str, Any]:
    """The MIGSpawner policy settings in a Config, as plain data."""
    section = cfg.MIGSpawner
    return {key: copy.deepcopy(section[key]) for key in POLICY_KEYS if key in section}


# ------------------------------------------------------------------------ the chart's names


def hub_service_account(values: Mapping[str, Any], release: str) -> str:
    """The hub ServiceAccount's name, as the chart's _helpers-names.tpl computes it.

    jupyterhub.fullname: fullnameOverride if it is a string (the default is ""), else
    "<release>" when the release name contains the chart name, else "<release>-jupyterhub".
    jupyterhub.hub-serviceaccount.fullname: hub.serviceAccount.name if set; else, when the
    chart creates it, "<fullname>-hub" (just "hub" for an empty fullname); else "default".
    """
    override = values.get("fullnameOverride")
    if isinstance(override, str):
        fullname = override
    else:
        name = values.get("nameOverride") or "jupyterhub"
        fullname = release if name in release else f"{release}-{name}"
    sa = values["hub"]["serviceAccount"]
    if sa.get("create"):
        return sa.get("name") or (f"{fullname}-hub" if fullname else "hub")
    return sa.get("name") or "default"


# ------------------------------------------------------------------------- MIG profile names

_PROFILE = re.compile(r"^(?P<g>[1-7])g\.(?P<gb>\d+)gb$")


def profile_size(name: str) -> tuple[int, int]:
    """("3g.40gb") -> (3, 40): compute slices and memory GB as the profile name states them."""
    m = _PROFILE.match(name)
    if not m:
        raise ValueError(f"not a plain MIG profile name: {name!r}")
    return int(m["g"]), int(m["gb"])
