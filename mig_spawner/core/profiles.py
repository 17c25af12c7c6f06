"""How the admin's own ``profile_list`` and the tiers combine into one list of profiles.

The rule (documented in the ``tiers`` help):

- The admin's own profiles come first, in their order, exactly as KubeSpawner reads them
  (``profile_options`` with ``choices`` and ``unlisted_choice``, ``kubespawner_override``).
  A profile with no tier is a CPU profile: no GPU, no GPU quota, KubeSpawner as usual.
- A profile, or one choice of a profile option, may ask for a tier with
  ``"mig_tier": "<tier slug>"``: then it needs a GPU, and the tier's slice request,
  fallback and quota apply. A choice's tier wins over its profile's.
- Every tier that no admin profile asks for is listed after them as a profile of its own
  (slug = tier slug). So ``profile_list = []`` (Z2JH's default ``singleuser.profileList``)
  means "none of my own": the tiers alone.
- A user in several teams gets a ``team`` option on every profile that needs a GPU.

Pure: plain dicts in, plain dicts out. The hub's shell applies KubeSpawner's own
initialisation (slugs, default choices) before calling :func:`combine`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from .policy import FORBIDDEN_OVERRIDES, ConfigError, Policy

TIER_KEY = "mig_tier"
TEAM_OPTION = "team"


def asked_tiers(profile: Mapping[str, Any]) -> list[str]:
    """Every tier a profile or one of its choices asks for, in order, no repeats."""
    out = [profile[TIER_KEY]] if profile.get(TIER_KEY) else []
    for option in (profile.get("profile_options") or {}).values():
        for choice in (option.get("choices") or {}).values():
            if isinstance(choice, Mapping) and choice.get(TIER_KEY):
                out.append(choice[TIER_KEY])
    return list(dict.fromkeys(out))


def check_own_profiles(own: Sequence[Mapping[str, Any]], policy: Policy) -> None:
    """Raise :class:`ConfigError` for a profile that asks for an unknown tier, clashes with
    a tier's slug or, needing a GPU, would set the GPU request or placement itself."""
    for profile in own:
        slug = profile.get("slug", profile.get("display_name", "?"))
        for tier in asked_tiers(profile):
            if policy.tier(tier) is None:
                raise ConfigError(
                    f"profile_list[{slug!r}] asks for mig_tier {tier!r}, which is not in "
                    f"MIGSpawner.tiers ({', '.join(policy.tiers)})"
                )
        if slug in policy.tiers and profile.get(TIER_KEY) != slug:
            raise ConfigError(
                f"profile_list[{slug!r}] has the slug of a tier; rename it, or set "
                f"'mig_tier': {slug!r} to make it that tier's profile"
            )
        if asked_tiers(profile):
            if TEAM_OPTION in (profile.get("profile_options") or {}):
                raise ConfigError(
                    f"profile_list[{slug!r}] needs a GPU and so may not define a profile "
                    f"option named {TEAM_OPTION!r} (mig-spawner adds the team picker)"
                )
            for where, override in _overrides(profile):
                bad = sorted(FORBIDDEN_OVERRIDES.intersection(override))
                if bad:
                    raise ConfigError(
                        f"profile_list[{slug!r}]{where} needs a GPU, so its kubespawner_override "
                        f"may not set {', '.join(bad)}: mig-spawner sets the GPU request and "
                        "placement"
                    )


def _overrides(profile: Mapping[str, Any]):
    yield "", profile.get("kubespawner_override") or {}
    for name, option in (profile.get("profile_options") or {}).items():
        for key, choice in (option.get("choices") or {}).items():
            if isinstance(choice, Mapping):
                yield f".{name}.{key}", choice.get("kubespawner_override") or {}
        unlisted = option.get("unlisted_choice") or {}
        yield f".{name}.unlisted_choice", unlisted.get("kubespawner_override") or {}


def tier_profile(tier) -> dict[str, Any]:
    return {
        "slug": tier.slug,
        "display_name": tier.display_name,
        "description": tier.description,
        "default": tier.default,
        TIER_KEY: tier.slug,
        "kubespawner_override": dict(tier.kubespawner_override),
    }


def combine(
    own: Sequence[Mapping[str, Any]], policy: Policy, groups: Sequence[str]
) -> list[dict[str, Any]]:
    """The static profile list a user in ``groups`` gets: own profiles, then the tiers.

    A profile (or choice) whose tier the user may not see is left out; so is a profile
    whose every choice of an option was left out. Raises :class:`ConfigError`.
    """
    check_own_profiles(own, policy)
    groups = tuple(sorted(groups))
    visible = {t.slug for t in policy.visible_tiers(groups)}
    teams = policy.teams_for(groups)
    asked: set[str] = set()
    out: list[dict[str, Any]] = []
    for original in own:
        asked.update(asked_tiers(original))
        profile = _visible_copy(original, visible)
        if profile is not None:
            out.append(profile)
    for tier in policy.tiers.values():
        if tier.slug in visible and tier.slug not in asked:
            out.append(tier_profile(tier))
    if len(teams) > 1:
        for profile in out:
            if asked_tiers(profile):
                options = profile.setdefault("profile_options", {})
                choices = {team: {"display_name": team} for team in teams}
                options[TEAM_OPTION] = {"display_name": "Team", "choices": choices}
    return out


def _visible_copy(profile: Mapping[str, Any], visible: set[str]) -> dict[str, Any] | None:
    if profile.get(TIER_KEY) and profile[TIER_KEY] not in visible:
        return None
    profile = copy.deepcopy(dict(profile))
    for option in (profile.get("profile_options") or {}).values():
        choices = option.get("choices")
        if not choices:
            continue
        kept = {
            k: c
            for k, c in choices.items()
            if not (isinstance(c, Mapping) and c.get(TIER_KEY) and c[TIER_KEY] not in visible)
        }
        if not kept and not (option.get("unlisted_choice") or {}).get("enabled"):
            return None
        if kept and not any(c.get("default") for c in kept.values() if isinstance(c, Mapping)):
            next(iter(kept.values()))["default"] = True
        option["choices"] = kept
    return profile


def find(profiles: Sequence[Mapping[str, Any]], slug: str) -> Mapping[str, Any] | None:
    return next((p for p in profiles if p.get("slug") == slug), None)


def tier_of(profile: Mapping[str, Any], options: Mapping[str, Any]) -> str | None:
    """The tier a chosen profile needs with these option choices, or None (CPU only)."""
    tier = profile.get(TIER_KEY) or None
    for name, option in (profile.get("profile_options") or {}).items():
        if name == TEAM_OPTION or options.get(f"{name}--unlisted-choice"):
            continue
        choices = option.get("choices") or {}
        key = options.get(name)
        choice = choices.get(key) if key else None
        if choice is None:  # KubeSpawner's default: the one marked default, else the first
            marked = [c for c in choices.values() if isinstance(c, Mapping) and c.get("default")]
            choice = (marked or list(choices.values()) or [None])[0]
        if isinstance(choice, Mapping) and choice.get(TIER_KEY):
            tier = choice[TIER_KEY]
    return tier


def profile_for_tier(
    profiles: Sequence[Mapping[str, Any]], tier: str
) -> tuple[Mapping[str, Any], dict[str, str]] | None:
    """A REST ``{"tier": slug}``: the profile (and option choices) that give that tier."""
    for profile in profiles:
        if profile.get(TIER_KEY) == tier and tier_of(profile, {}) == tier:
            return profile, {}
    for profile in profiles:
        for name, option in (profile.get("profile_options") or {}).items():
            for key, choice in (option.get("choices") or {}).items():
                if isinstance(choice, Mapping) and choice.get(TIER_KEY) == tier:
                    return profile, {name: key}
    return None
