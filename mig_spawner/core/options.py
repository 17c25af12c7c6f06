"""User options: what a spawn request may say, from the form or the REST API.

The form sends ``{"profile": <tier>, "team": <team>}`` (KubeSpawner's profile_list
machinery); REST clients send ``{"tier": ..., "team": ...}``. Nothing else is accepted:
resources, node selectors and KubeSpawner overrides are the admin's to set, so a request
that tries to pass them is refused rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .policy import Policy

ALLOWED_KEYS = ("tier", "profile", "team")


class OptionsError(ValueError):
    """A spawn request's options are invalid. ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SpawnOptions:
    tier: str
    team: str | None = None

    def as_user_options(self) -> dict[str, str]:
        """The form of user_options KubeSpawner's profile machinery understands."""
        out = {"profile": self.tier}
        if self.team:
            out["team"] = self.team
        return out


def parse_options(options: Any, policy: Policy, groups) -> SpawnOptions:
    """Validate ``options`` for a user in ``groups``; raise :class:`OptionsError` if invalid."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise OptionsError("user_options must be a JSON object like {'tier': 'notebook'}")
    extra = sorted(str(k) for k in options if k not in ALLOWED_KEYS)
    if extra:
        raise OptionsError(
            f"mig-spawner accepts only 'tier' and 'team' in user_options; refused: "
            f"{', '.join(repr(k) for k in extra)}. Resources, node selectors and overrides "
            "are set by the hub admin."
        )
    for key in ALLOWED_KEYS:
        if key in options and not isinstance(options[key], str):
            raise OptionsError(f"user_options[{key!r}] must be a string")
    tier = options.get("tier")
    profile = options.get("profile")
    if tier and profile and tier != profile:
        raise OptionsError(f"'tier' ({tier!r}) and 'profile' ({profile!r}) disagree")
    slug = tier or profile
    groups = frozenset(groups)
    visible = policy.visible_tiers(groups)
    if not slug:
        defaults = [t for t in visible if t.default] or visible
        if not defaults:
            raise OptionsError("No tier is available to you; ask your hub admin.", 403)
        slug = defaults[0].slug
    tier_obj = policy.tier(slug)
    if tier_obj is None:
        names = ", ".join(t.slug for t in visible) or "none"
        raise OptionsError(f"There is no tier {slug!r}; tiers you may use: {names}")
    if not tier_obj.visible_to(groups):
        raise OptionsError(f"Tier {slug!r} is not available to you.", 403)
    team = options.get("team") or None
    if team is not None and team not in policy.teams_for(groups):
        why = "you are not a member" if team not in groups else "it has no GPU quota"
        raise OptionsError(f"You cannot spawn for team {team!r}: {why}.", 403)
    return SpawnOptions(tier=slug, team=team)
