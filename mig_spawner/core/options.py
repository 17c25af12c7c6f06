"""User options: the shape of a spawn request, from the form or the REST API.

The form sends what KubeSpawner's form sends: ``{"profile": slug, <option>: choice,
<option>--unlisted-choice: text, "team": team}``. REST clients may also name a tier,
``{"tier": "notebook", "team": "vision"}``; it selects the profile that gives that tier.
Anything else is refused rather than silently ignored: resources, node selectors and
overrides are the admin's to set.

Shape only. Whether the user may use that tier, or spawn for that team, is decided once,
by :func:`mig_spawner.core.admission.decide`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .echo import echo
from .errors import InputError
from .profiles import TEAM_OPTION, find, profile_for_tier, tier_of

#: The key under which the hub shows what a server was given (see core/claim.py).
RECORD_KEY = "mig"
BASE_KEYS = ("profile", "tier", TEAM_OPTION)


class OptionsError(InputError):
    """A spawn request's options are invalid. ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400, **kwargs):
        super().__init__(message, **kwargs)
        self.status = status


@dataclass(frozen=True)
class SpawnOptions:
    #: the chosen profile's slug; None when the tier asked for is not on the user's list
    #: (hidden or unknown: decide() says which)
    profile: str | None
    #: the tier it needs, or None for a CPU-only profile
    tier: str | None
    team: str | None = None
    #: the profile's own option choices, as KubeSpawner reads them
    choices: Mapping[str, str] = field(default_factory=dict)

    def as_user_options(self) -> dict[str, str]:
        """The user_options KubeSpawner's profile machinery understands (no team)."""
        out = {"profile": self.profile} if self.profile else {}
        out.update(self.choices)
        return out


def parse_options(
    options: Any, profiles: Sequence[Mapping[str, Any]], tiers: Sequence[str] = ()
) -> SpawnOptions:
    """Check ``options`` against the user's initialised ``profiles`` (see profiles.combine).

    ``tiers`` are all the hub's tier slugs: a request naming one that is not on the
    user's list is passed on for :func:`decide` to refuse with the reason.
    """
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise OptionsError("user_options must be a JSON object like {'tier': 'notebook'}")
    options = {k: v for k, v in options.items() if k != RECORD_KEY}
    # Keys no profile offers are refused for that, whatever their value (a dict
    # extra_resource_limits is not "not a string": it is not the user's to set).
    known = set(BASE_KEYS)
    for p in profiles:
        for name in p.get("profile_options") or {}:
            known.update((name, f"{name}--unlisted-choice"))
    for key, value in options.items():
        if key not in known:
            raise _not_accepted(sorted(str(k) for k in options if k not in known), known)
        if not isinstance(value, str):
            raise OptionsError(
                f"user_options[{key!r}] must be a string, not {type(value).__name__}",
                path=("user_options", str(key)),
                expected="a string",
            )
    tier, slug, team = options.get("tier"), options.get("profile"), options.get("team") or None
    preset: dict[str, str] = {}
    if slug:
        profile = find(profiles, slug)
        if profile is None:
            if slug in tiers and (not tier or tier == slug):
                return SpawnOptions(None, slug, team)
            names = ", ".join(repr(p.get("slug")) for p in profiles) or "none"
            raise OptionsError(f"There is no profile {echo(slug)}; profiles you may use: {names}")
    elif tier:
        found = profile_for_tier(profiles, tier)
        if found is None:
            return SpawnOptions(None, tier, team)
        profile, preset = found
    else:
        profile = next((p for p in profiles if p.get("default")), profiles[0] if profiles else None)
        if profile is None:
            raise OptionsError("There is nothing to start: this hub lists no profiles.", 403)
    opts = profile.get("profile_options") or {}
    allowed = set(BASE_KEYS)
    for name in opts:
        allowed.update((name, f"{name}--unlisted-choice"))
    extra = sorted(str(k) for k in options if k not in allowed)
    if extra:
        raise _not_accepted(extra, allowed, profile.get("display_name", profile["slug"]))
    choices = {**preset, **{k: v for k, v in options.items() if k not in BASE_KEYS}}
    for name, option in opts.items():
        if name == TEAM_OPTION:
            continue
        _check_choice(name, option, choices)
    wanted = tier_of(profile, choices)
    if tier and tier != wanted:
        raise OptionsError(
            f"'tier' ({echo(tier)}) and profile {profile['slug']!r} "
            f"({'tier ' + repr(wanted) if wanted else 'no GPU'}) disagree"
        )
    return SpawnOptions(profile["slug"], wanted, team if wanted else None, choices)


def _not_accepted(extra: Sequence[str], allowed, profile: str | None = None) -> OptionsError:
    """The refusal of keys a request may not carry: which, and what it may."""
    who = f"Profile {profile!r} accepts" if profile else "This hub accepts"
    return OptionsError(
        f"{who} no "
        f"{', '.join(echo(k) for k in extra[:5])}{' ...' if len(extra) > 5 else ''}; "
        "it accepts: "
        f"{', '.join(repr(k) for k in sorted(allowed))}. Resources, node selectors and "
        "overrides are set by the hub admin.",
        path=("user_options", extra[0]),
        expected=f"one of {', '.join(sorted(allowed))}",
    )


def _check_choice(name: str, option: Mapping[str, Any], choices: Mapping[str, str]) -> None:
    label = option.get("display_name", name)
    unlisted = choices.get(f"{name}--unlisted-choice")
    if unlisted:
        config = option.get("unlisted_choice") or {}
        if not config.get("enabled"):
            raise OptionsError(f"{label!r} accepts only its listed choices.")
        regex = config.get("validation_regex")
        if regex and not re.match(regex, unlisted):
            why = config.get("validation_message") or f"it must match {regex}"
            raise OptionsError(f"{echo(unlisted)} is not a valid {label!r}: {why}")
        return
    value = choices.get(name)
    if value and value not in (option.get("choices") or {}):
        names = ", ".join(repr(k) for k in option.get("choices") or {}) or "none"
        raise OptionsError(f"{value!r} is not a choice for {label!r}; choices: {names}")
