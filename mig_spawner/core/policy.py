"""The admin's policy: tiers, fallback chains, team quotas and how fallbacks are charged.

Pure data and validation. ``build_policy`` takes the plain dicts an admin writes in
``jupyterhub_config.py`` (or Helm's ``hub.config.MIGSpawner``) and returns an immutable
:class:`Policy`, or raises :class:`ConfigError` with one specific sentence naming the
tier/team and key at fault. Nothing here knows about Kubernetes or KubeSpawner.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .catalog import MAX_COMPUTE_SLICES, WHOLE_GPU, parse_profile_name
from .errors import ConfigError
from .kueueconfig import KueueSettings, parse_settings
from .memo import fingerprint
from .reclaimrules import ReclaimRules, parse_rules

CHARGE_MODES = ("granted", "requested")
QUOTA_KEYS = ("compute_slices", "memory_gb", "servers", "per_user_compute_slices")
#: A team quota may also carry ``order``: the team's place among a member's teams.
TEAM_QUOTA_KEYS = (*QUOTA_KEYS, "order")
TIER_KEYS = (
    "display_name",
    "order",
    "description",
    "compute_slices",
    "min_memory_gb",
    "max_compute_slices",
    "fallback",
    "max_fallback_steps",
    "groups",
    "default",
    "node_selector",
    "tolerations",
    "kubespawner_override",
    "max_wait",
    "reclaim",
)
#: ``MIGSpawner.max_wait_cap``'s default: no tier waits longer than an hour
DEFAULT_MAX_WAIT_CAP = 3600.0
#: Overrides a tier may not carry: the GPU request and placement are mig-spawner's to set.
FORBIDDEN_OVERRIDES = frozenset(
    {"extra_resource_limits", "extra_resource_guarantees", "node_selector", "tolerations"}
)
TOLERATION_KEYS = frozenset({"key", "operator", "value", "effect", "tolerationSeconds"})


@dataclass(frozen=True)
class Tier:
    """What a user chooses: a minimum slice size, how far it may fall back, who sees it."""

    slug: str
    display_name: str
    description: str = ""
    compute_slices: int = 1
    min_memory_gb: float = 0
    max_compute_slices: int = MAX_COMPUTE_SLICES
    fallback: bool = True
    max_fallback_steps: int | None = None
    groups: frozenset[str] = frozenset()
    default: bool = False
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    kubespawner_override: Mapping[str, Any] = field(default_factory=dict)
    #: ``fallback_chains[slug]``: profile names in the admin's order, or None for the default.
    chain: tuple[str, ...] | None = None
    #: seconds a spawn refused for capacity waits in line (0: refused at once)
    max_wait: float = 0
    #: when its idle servers may be stopped for a spawn waiting in line (None: never)
    reclaim: ReclaimRules | None = None

    def visible_to(self, groups: frozenset[str] | set[str] | tuple[str, ...]) -> bool:
        return not self.groups or bool(self.groups.intersection(groups))

    @functools.cached_property
    def fingerprint(self) -> str:
        """Its settings as canonical text: equal tiers, equal fingerprints."""
        return _fingerprint(self)

    def __hash__(self) -> int:  # a value: caches key by the tier itself
        return hash(self.fingerprint)


@dataclass(frozen=True)
class Quota:
    """Limits for one team (or, as ``default_quota``, for each user in no team). None = no limit."""

    compute_slices: int | None = None
    memory_gb: float | None = None
    servers: int | None = None
    per_user_compute_slices: int | None = None

    @property
    def unlimited(self) -> bool:
        return all(getattr(self, k) is None for k in QUOTA_KEYS)


@dataclass(frozen=True)
class Policy:
    tiers: Mapping[str, Tier]
    team_quotas: Mapping[str, Quota] = field(default_factory=dict)
    default_quota: Quota = field(default_factory=Quota)
    charge: str = "granted"
    #: no tier's ``max_wait`` may exceed it (``MIGSpawner.max_wait_cap``)
    max_wait_cap: float = DEFAULT_MAX_WAIT_CAP
    #: ``MIGSpawner.kueue`` (None: the built-in quotas); its teams are team_quotas' keys
    kueue: KueueSettings | None = None

    def tier(self, slug: str) -> Tier | None:
        return self.tiers.get(slug)

    def visible_tiers(self, groups) -> list[Tier]:
        groups = frozenset(groups)
        return [t for t in self.tiers.values() if t.visible_to(groups)]

    def teams_for(self, groups) -> list[str]:
        """The user's teams (groups with a quota), in the order the admin listed them."""
        groups = set(groups)
        return [team for team in self.team_quotas if team in groups]

    def quota_for(self, team: str | None) -> Quota:
        return self.team_quotas[team] if team is not None else self.default_quota

    @functools.cached_property
    def fingerprint(self) -> str:
        """Its settings as canonical text: equal policies, equal fingerprints."""
        return _fingerprint(self)

    def __hash__(self) -> int:  # a value: caches key by the policy itself
        return hash(self.fingerprint)

    def __eq__(self, other: object) -> bool:  # the order of tiers and teams counts
        return isinstance(other, Policy) and (
            self is other or self.fingerprint == other.fingerprint
        )


def _fingerprint(value: Any) -> str:
    def plain(v: Any) -> Any:
        if isinstance(v, Policy):  # the order of tiers and teams is part of the policy
            return {
                "tiers": [(k, plain(t)) for k, t in v.tiers.items()],
                "team_quotas": [(k, plain(q)) for k, q in v.team_quotas.items()],
                "default_quota": plain(v.default_quota),
                "charge": v.charge,
                "max_wait_cap": v.max_wait_cap,
                "kueue": plain(v.kueue),
            }
        if isinstance(v, Tier | Quota | ReclaimRules | KueueSettings):
            return {f.name: plain(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        return v

    return type(value).__name__ + fingerprint(plain(value))


# --------------------------------------------------------------------------- validation


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(where: str, data: Mapping, allowed) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key {key!r}{_suggest(str(key), allowed)}; "
                f"allowed keys: {', '.join(allowed)}"
            )


def _int(where: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be a whole number, not {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{where} must be {bound}, not {value}")
    return value


def _number(where: str, value: Any, *, minimum: float = 0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a number, not {value!r}")
    if value < minimum:
        raise ConfigError(f"{where} must be >= {minimum}, not {value}")
    return value


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    return value


def _str(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {value!r}")
    return value


def _str_map(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping of label to value, not {value!r}")
    return {_str(f"{where} key", k): _str(f"{where}[{k!r}]", v) for k, v in value.items()}


def _tolerations(where: str, value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list of Kubernetes tolerations, not {value!r}")
    out = []
    for i, tol in enumerate(value):
        if not isinstance(tol, Mapping):
            raise ConfigError(f"{where}[{i}] must be a mapping, not {tol!r}")
        _check_keys(f"{where}[{i}]", tol, sorted(TOLERATION_KEYS))
        if tol.get("operator", "Equal") not in ("Equal", "Exists"):
            raise ConfigError(f"{where}[{i}].operator must be 'Equal' or 'Exists'")
        if tol.get("effect") not in (None, "", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ConfigError(
                f"{where}[{i}].effect must be NoSchedule, PreferNoSchedule or NoExecute"
            )
        out.append(dict(tol))
    return tuple(out)


def _chain(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where} must be a non-empty list of MIG profile names, not {value!r}")
    out = []
    for entry in value:
        entry = _str(f"{where} entry", entry)
        if entry != WHOLE_GPU:
            try:
                entry = parse_profile_name(entry).k8s_name
            except ValueError as e:
                raise ConfigError(f"{where}: {e} (use e.g. '2g.20gb' or {WHOLE_GPU!r})") from e
        if entry in out:
            raise ConfigError(f"{where} lists {entry!r} twice")
        out.append(entry)
    return tuple(out)


def _tier(slug: Any, data: Any, chain: tuple[str, ...] | None) -> Tier:
    where = f"MIGSpawner.tiers[{slug!r}]"
    if (
        not isinstance(slug, str)
        or not slug
        or not slug.replace("-", "").replace("_", "").isalnum()
    ):
        raise ConfigError(f"{where}: a tier slug must be letters, digits, '-' or '_'")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings, not {data!r}")
    data = _deep_without_nulls(data)  # a Helm null anywhere inside means absent
    _check_keys(where, data, TIER_KEYS)
    g = _int(f"{where}.compute_slices", data.get("compute_slices", 1), minimum=1, maximum=7)
    fallback = _bool(f"{where}.fallback", data.get("fallback", True))
    ceiling_default = MAX_COMPUTE_SLICES if fallback else g
    ceiling = _int(
        f"{where}.max_compute_slices",
        data.get("max_compute_slices", ceiling_default),
        minimum=1,
        maximum=MAX_COMPUTE_SLICES,
    )
    if ceiling < g:
        raise ConfigError(
            f"{where}.max_compute_slices ({ceiling}) is below its compute_slices ({g})"
        )
    steps = data.get("max_fallback_steps")
    if steps is not None:
        steps = _int(f"{where}.max_fallback_steps", steps, minimum=0)
    groups = data.get("groups", [])
    if isinstance(groups, str) or not isinstance(groups, (list, tuple, set, frozenset)):
        raise ConfigError(f"{where}.groups must be a list of JupyterHub group names")
    override = data.get("kubespawner_override", {})
    if not isinstance(override, Mapping):
        raise ConfigError(f"{where}.kubespawner_override must be a mapping")
    bad = sorted(FORBIDDEN_OVERRIDES.intersection(override))
    if bad:
        raise ConfigError(
            f"{where}.kubespawner_override may not set {', '.join(bad)}: mig-spawner sets the GPU"
            " request and placement; use the tier's own node_selector/tolerations"
        )
    return Tier(
        slug=slug,
        display_name=_str(f"{where}.display_name", data.get("display_name", slug)),
        description=_str(f"{where}.description", data.get("description", "")),
        compute_slices=g,
        min_memory_gb=_number(f"{where}.min_memory_gb", data.get("min_memory_gb", 0)),
        max_compute_slices=ceiling,
        fallback=fallback,
        max_fallback_steps=steps,
        groups=frozenset(_str(f"{where}.groups entry", x) for x in groups),
        default=_bool(f"{where}.default", data.get("default", False)),
        node_selector=_str_map(f"{where}.node_selector", data.get("node_selector", {})),
        tolerations=_tolerations(f"{where}.tolerations", data.get("tolerations", [])),
        kubespawner_override=dict(override),
        chain=chain,
        max_wait=_number(f"{where}.max_wait", data.get("max_wait", 0)),
        reclaim=parse_rules(f"{where}.reclaim", data.get("reclaim")),
    )


def _quota(where: str, data: Any, keys=QUOTA_KEYS) -> Quota:
    if data is None:
        return Quota()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping like {{'compute_slices': 8}}, not {data!r}")
    _check_keys(where, data, keys)

    def opt_int(key):
        v = data.get(key)
        return None if v is None else _int(f"{where}.{key}", v, minimum=0)

    mem = data.get("memory_gb")
    return Quota(
        compute_slices=opt_int("compute_slices"),
        memory_gb=None if mem is None else _number(f"{where}.memory_gb", mem),
        servers=opt_int("servers"),
        per_user_compute_slices=opt_int("per_user_compute_slices"),
    )


def _without_nulls(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if value is not None}


def _in_order(where: str, entries: Mapping[str, Any], what: str) -> list[str]:
    """The keys of ``entries`` sorted by their ``order`` setting, or as written if none has one.

    Helm's ``toYaml`` sorts map keys, so a values file's order never reaches the hub: the
    order an admin wants must be data. Either every entry sets ``order`` (a whole number,
    lowest first, no two alike) or none does (a Python config's insertion order is kept).
    """
    orders: dict[str, int] = {}
    for key, data in entries.items():
        value = data.get("order") if isinstance(data, Mapping) else None
        if value is not None:
            orders[key] = _int(f"{where}[{key!r}].order", value, minimum=-(10**9))
    if not orders:
        return list(entries)
    # (a non-mapping entry gets its own error when it is validated)
    missing = [
        key for key, data in entries.items() if key not in orders and isinstance(data, Mapping)
    ]
    if missing:
        raise ConfigError(
            f"{where}: {', '.join(map(repr, missing))} {'has' if len(missing) == 1 else 'have'} "
            f"no order, but {', '.join(map(repr, orders))} {'does' if len(orders) == 1 else 'do'}:"
            f" set order on every {what} or on none (Helm sorts map keys, so order is what"
            " keeps the sequence you wrote)"
        )
    seen: dict[int, str] = {}
    for key, value in orders.items():
        if value in seen:
            raise ConfigError(
                f"{where}: {seen[value]!r} and {key!r} both have order {value};"
                f" give each {what} its own"
            )
        seen[value] = key
    return sorted(entries, key=lambda key: orders.get(key, 0))


def _deep_without_nulls(value: Any) -> Any:
    """``value`` with every None left out of its mappings and lists, at any depth."""
    if isinstance(value, Mapping):
        return {k: _deep_without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_deep_without_nulls(v) for v in value if v is not None]
    return value


def build_policy(
    *,
    tiers: Mapping[str, Any],
    fallback_chains: Mapping[str, Any] | None = None,
    team_quotas: Mapping[str, Any] | None = None,
    default_quota: Mapping[str, Any] | None = None,
    charge: str = "granted",
    max_wait_cap: float = DEFAULT_MAX_WAIT_CAP,
    kueue: Mapping[str, Any] | None = None,
    backend: str = "device-plugin",
) -> Policy:
    """Validate the admin's settings and return an immutable :class:`Policy`.

    An entry whose value is ``None`` in ``tiers``, ``fallback_chains`` or ``team_quotas``
    is treated as absent: that is how a Helm values overlay removes an entry (``vision:
    null``), and a removed team must fall back to the default quota, never to no limit.
    """
    if isinstance(tiers, Mapping):
        tiers = _without_nulls(tiers)
    if not isinstance(tiers, Mapping) or not tiers:
        raise ConfigError(
            "MIGSpawner.tiers must be a non-empty mapping of tier slug to settings,"
            " e.g. {'notebook': {'display_name': '1g notebook', 'compute_slices': 1}}"
        )
    chains = fallback_chains or {}
    if not isinstance(chains, Mapping):
        raise ConfigError("MIGSpawner.fallback_chains must map tier slugs to lists of profiles")
    chains = _without_nulls(chains)
    for slug in chains:
        if slug not in tiers:
            raise ConfigError(
                f"MIGSpawner.fallback_chains[{slug!r}] names no tier{_suggest(str(slug), tiers)}"
            )
    built = {
        slug: _tier(
            slug,
            tiers[slug],
            _chain(f"MIGSpawner.fallback_chains[{slug!r}]", chains[slug])
            if slug in chains
            else None,
        )
        for slug in _in_order("MIGSpawner.tiers", tiers, "tier")
    }
    defaults = [t.slug for t in built.values() if t.default]
    if len(defaults) > 1:
        raise ConfigError(f"MIGSpawner.tiers: only one tier may be default, got {defaults}")
    if not isinstance(team_quotas or {}, Mapping):
        raise ConfigError("MIGSpawner.team_quotas must map JupyterHub group names to quotas")
    teams = _without_nulls(team_quotas or {})
    for team in teams:
        if not isinstance(team, str) or not team:
            raise ConfigError(f"MIGSpawner.team_quotas: {team!r} is not a group name")
    quotas = {
        team: _quota(f"MIGSpawner.team_quotas[{team!r}]", teams[team], TEAM_QUOTA_KEYS)
        for team in _in_order("MIGSpawner.team_quotas", teams, "team")
    }
    queues = parse_settings(kueue, team_quotas=teams, default_quota=default_quota, backend=backend)
    if queues is not None:  # Kueue's ClusterQueues hold the quota: teams without limits
        quotas = {team: Quota() for team in queues.local_queues}
    cap = _number("MIGSpawner.max_wait_cap", max_wait_cap)
    for tier in built.values():
        if tier.max_wait > cap:
            raise ConfigError(
                f"MIGSpawner.tiers[{tier.slug!r}].max_wait ({tier.max_wait:g} s) is above"
                f" MIGSpawner.max_wait_cap ({cap:g} s): lower the tier's or raise the cap"
            )
    if charge not in CHARGE_MODES:
        raise ConfigError(f"MIGSpawner.charge must be 'granted' or 'requested', not {charge!r}")
    return Policy(
        tiers=built,
        team_quotas=quotas,
        default_quota=_quota("MIGSpawner.default_quota", default_quota),
        charge=charge,
        max_wait_cap=cap,
        kueue=queues,
    )


#: The ``c.MIGSpawner`` settings that make up the policy, with their defaults. The hub
#: (``MIGSpawner.policy``), the hub-start check and ``mig-spawner explain`` all build the
#: policy from these through :func:`policy_from_settings`: one path, one set of rules.
POLICY_SETTINGS: dict[str, Any] = {
    "tiers": {},
    "fallback_chains": {},
    "team_quotas": {},
    "default_quota": {},
    "charge": "granted",
    "max_wait_cap": DEFAULT_MAX_WAIT_CAP,
    "kueue": {},
    "backend": "device-plugin",  # hub/dra.py's trait: Kueue mode refuses "dra"
}


def policy_from_settings(settings: Mapping[str, Any]) -> Policy:
    """The policy from ``{setting: value}`` (missing settings take their defaults).

    The last policy built is kept under the settings' fingerprint: every spawner of a hub
    shares one Policy (and so the caches keyed by it). A ConfigError keeps nothing.
    """
    key = fingerprint(dict(settings), ordered=True)
    if _LAST_POLICY and _LAST_POLICY[0] == key:
        return _LAST_POLICY[1]
    policy = _policy_from_settings(settings)
    _LAST_POLICY[:] = [key, policy]
    return policy


_LAST_POLICY: list[Any] = []  # [settings fingerprint, Policy]


def _policy_from_settings(settings: Mapping[str, Any]) -> Policy:
    values = {key: settings.get(key, default) for key, default in POLICY_SETTINGS.items()}
    for key in ("charge", "backend"):  # caseless settings (CaselessStrEnum)
        if isinstance(values[key], str):
            values[key] = values[key].lower()
    return build_policy(**values)
