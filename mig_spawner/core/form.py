"""The spawn form's data: a KubeSpawner ``profile_list`` generated from tiers and live state.

Each visible tier becomes one profile (slug = tier slug) carrying, under ``"mig"``, what
the form shows: what the tier gives, how many are free, what happens when none is free,
the team's quota, and -- when the decision is a refusal -- why it is disabled. A user in
several teams picks the team through a ``profile_options`` choice, so KubeSpawner's own
form parsing returns ``{"profile": tier, "team": team}``.

Every figure comes from :func:`mig_spawner.core.admission.decide`, the same function
``start()`` calls, so the form can never promise what start() would refuse.
"""

from __future__ import annotations

from typing import Any

from .admission import Decision, SpawnRequest, availability, decide
from .cluster import ClusterState
from .policy import Policy, Tier
from .quota import describe_usage


def _quota_line(decision: Decision) -> str:
    if decision.quota is None:
        return ""
    who = f"team {decision.team}" if decision.team else "your quota"
    return f"{who}: {describe_usage(decision.quota)}"


def _tier_view(tier: Tier, decision: Decision, state: ClusterState, known: bool) -> dict:
    rows = availability(state, tier)
    view: dict[str, Any] = {
        "known": known,
        "gives": "",
        "available": "",
        "fallback_note": "",
        "quota": _quota_line(decision),
        "disabled": False,
        "reason": "",
        "chain": [
            {"label": kind.label, "free": free, "total": total} for kind, free, total in rows
        ],
    }
    if rows:
        first_profile = rows[0][0].profile
        step0 = [(k, f, t) for k, f, t in rows if k.profile == first_profile]
        view["gives"] = " or ".join(dict.fromkeys(k.describe() for k, _, _ in step0))
        free = sum(f for _, f, _ in step0)
        total = sum(t for _, _, t in step0)
        view["available"] = f"{free} of {total} free"
        if free == 0 and decision.admitted and decision.granted is not None:
            view["fallback_note"] = f"none free: starts on {decision.granted.label}"
    if not known:
        view["available"] = "availability unknown"
        view["fallback_note"] = ""
    elif not decision.admitted:
        view["disabled"] = True
        view["reason"] = decision.message
    return view


def tier_profiles(policy: Policy, groups) -> list[dict[str, Any]]:
    """The static profile_list: what KubeSpawner needs to apply a tier, no live figures.

    One profile per tier the user may see, with the tier's ``kubespawner_override`` and,
    for a user in several teams, a ``team`` choice. ``load_user_options`` uses this alone;
    the form adds the live view (:func:`build_profile_list`).
    """
    groups = tuple(sorted(groups))
    teams = policy.teams_for(groups)
    profiles = []
    for tier in policy.visible_tiers(groups):
        profile: dict[str, Any] = {
            "slug": tier.slug,
            "display_name": tier.display_name,
            "description": tier.description,
            "default": tier.default,
            "kubespawner_override": dict(tier.kubespawner_override),
        }
        if len(teams) > 1:
            choices = {team: {"display_name": team} for team in teams}
            profile["profile_options"] = {"team": {"display_name": "Team", "choices": choices}}
        profiles.append(profile)
    return profiles


def build_profile_list(
    policy: Policy,
    state: ClusterState,
    *,
    user: str,
    groups,
    known: bool = True,
    problem: str = "",
) -> list[dict[str, Any]]:
    """The form's profile_list for ``user``: :func:`tier_profiles` plus live figures."""
    groups = tuple(sorted(groups))
    profiles = tier_profiles(policy, groups)
    for profile in profiles:
        tier = policy.tiers[profile["slug"]]
        decision = decide(SpawnRequest(user=user, tier=tier.slug, groups=groups), policy, state)
        view = _tier_view(tier, decision, state, known)
        if not known and problem:
            view["reason"] = problem
        profile["mig"] = view
        if "profile_options" in profile:
            choices = profile["profile_options"]["team"]["choices"]
            chosen = decision.team if decision.team in choices else next(iter(choices))
            for team, choice in choices.items():
                per_team = decide(
                    SpawnRequest(user=user, tier=tier.slug, groups=groups, team=team), policy, state
                )
                usage = _quota_line(per_team).removeprefix(f"team {team}: ")
                choice["display_name"] = f"{team} ({usage})" if usage else team
                choice["default"] = team == chosen
    # The default tier should be one the user can start now.
    enabled = [p for p in profiles if not p["mig"]["disabled"]]
    if enabled and not any(p["default"] for p in enabled):
        for p in profiles:
            p["default"] = p is enabled[0]
    return profiles
