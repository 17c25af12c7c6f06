"""The spawn form's data: a KubeSpawner ``profile_list`` of the admin's profiles and the tiers.

The admin's own profiles and the tiers combine as :mod:`.profiles` says. Each profile
that needs a GPU carries, under ``"mig"``, what
the form shows: what the tier gives, how many are free, what happens when none is free,
the team's quota, and -- when the decision is a refusal -- why it is disabled. A user in
several teams picks the team through a ``profile_options`` choice, so KubeSpawner's own
form parsing returns ``{"profile": tier, "team": team}``.

Every figure comes from :func:`mig_spawner.core.admission.decide`, the same function
``start()`` calls, so the form can never promise what start() would refuse.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from . import messages
from .admission import CAPACITY, Decision, SpawnRequest, decide
from .cluster import ClusterState
from .memo import VersionMemo, fingerprint
from .policy import Policy, Tier
from .profiles import TEAM_OPTION, TIER_KEY, combine, tier_of
from .quota import describe_usage

#: the form's profile lists per (cache, version), by policy, user, groups and profiles
_FORMS = VersionMemo()


def _quota_line(decision: Decision) -> str:
    if decision.kueue_room is not None:  # Kueue mode: the team's ClusterQueue's room
        who = f"team {decision.team}" if decision.team else "your queue"
        return f"{who}: {decision.kueue_room.describe()}"
    if decision.quota is None:
        return ""
    who = f"team {decision.team}" if decision.team else "your quota"
    return f"{who}: {describe_usage(decision.quota)}"


def _tier_view(
    tier: Tier, decision: Decision, state: ClusterState, known: bool, waiting: int = 0
) -> dict:
    rows = [(c.slice_type, c.free, c.total) for c in decision.chain]  # the chain it walked
    view: dict[str, Any] = {
        "known": known,
        "gives": "",
        "available": "",
        "fallback_note": "",
        "quota": _quota_line(decision),
        "disabled": False,
        "reason": "",
        "waiting": waiting,  # spawns waiting in line for this tier
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
    if waiting:
        view["available"] += f" · {waiting} waiting"
    if not known:
        view["available"] = "availability unknown"
        view["fallback_note"] = ""
    elif not decision.admitted and decision.code == CAPACITY and tier.max_wait > 0:
        place = f"#{waiting + 1} in line" if waiting else "first in line"
        view["fallback_note"] = (
            f"none free: you wait {place}, up to {messages.duration(tier.max_wait)}"
        )
    elif not decision.admitted:
        view["disabled"] = True
        view["reason"] = decision.message
    return view


def tier_profiles(policy: Policy, groups, own: Sequence[Mapping[str, Any]] = ()) -> list[dict]:
    """The static profile_list: the admin's own profiles and the tiers, no live figures.

    See :mod:`mig_spawner.core.profiles` for how they combine. ``load_user_options`` uses
    this alone; the form adds the live view (:func:`build_profile_list`).
    """
    return combine(own, policy, groups)


def _cpu_view() -> dict[str, Any]:
    return {"gpu": False, "disabled": False, "reason": "", "quota": "", "chain": []}


def build_profile_list(
    policy: Policy,
    state: ClusterState,
    *,
    user: str,
    groups,
    known: bool = True,
    problem: str = "",
    own: Sequence[Mapping[str, Any]] = (),
    waiting: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """The form's profile_list for ``user``: :func:`tier_profiles` plus live figures.

    ``waiting``: tier -> spawns waiting in line for it (the hub's line); a tier full for
    capacity with a ``max_wait`` stays selectable (the start waits in line).

    Every profile gets ``"mig"``: for a CPU profile ``{"gpu": False}``; for one that needs
    a GPU, the figures of its tier (with the default choice). A choice that asks for a
    tier carries its own ``"mig"`` figures; a team choice carries that team's quota line.
    """
    groups = tuple(sorted(groups))
    view = state.snapshot()  # every tier's figures from one consistent view
    waiting = {tier: n for tier, n in (waiting or {}).items() if n}
    key = (policy, user, groups, known, problem, fingerprint(own, ordered=True))
    key += (tuple(sorted(waiting.items())),)

    def compute():
        return _profile_list(policy, view, user, groups, known, problem, own, waiting)

    profiles = _FORMS.get(view.key, key, compute)
    return copy.deepcopy(profiles)  # KubeSpawner initialises profiles in place


def _profile_list(
    policy, state, user, groups, known, problem, own, waiting
) -> list[dict[str, Any]]:
    """One decision per tier; per-team figures from that decision's ``per_team``."""
    profiles = tier_profiles(policy, groups, own)
    views: dict[tuple[str, str | None], tuple[Decision, dict]] = {}

    def view_of(slug: str, team: str | None = None) -> tuple[Decision, dict]:
        if (slug, team) not in views:
            decision = None
            if team is not None:  # the tier's one decision already has every team's
                base, _ = view_of(slug)
                decision = next((d for d in base.per_team if d.team == team), None)
            if decision is None:
                request = SpawnRequest(user=user, tier=slug, groups=groups, team=team)
                decision = decide(request, policy, state)
            view = _tier_view(policy.tiers[slug], decision, state, known, waiting.get(slug, 0))
            view["gpu"] = True
            if not known and problem:
                view["reason"] = problem
            views[slug, team] = (decision, view)
        return views[slug, team]

    for profile in profiles:
        slug = tier_of(profile, {})
        if slug is None:
            profile["mig"] = _cpu_view()
            continue
        decision, view = view_of(slug)
        profile["mig"] = dict(view)
        for name, option in (profile.get("profile_options") or {}).items():
            if name == TEAM_OPTION:
                continue
            for choice in (option.get("choices") or {}).values():
                if choice.get(TIER_KEY):
                    choice["mig"] = view_of(choice[TIER_KEY])[1]
        team_option = (profile.get("profile_options") or {}).get(TEAM_OPTION)
        if team_option:
            choices = team_option["choices"]
            chosen = decision.team if decision.team in choices else next(iter(choices))
            for team, choice in choices.items():
                per_team, team_view = view_of(slug, team)
                usage = _quota_line(per_team).removeprefix(f"team {team}: ")
                choice["display_name"] = f"{team} ({usage})" if usage else team
                choice["default"] = team == chosen
                choice["mig"] = team_view
    # The default profile should be one the user can start now.
    enabled = [p for p in profiles if not p["mig"]["disabled"]]
    if enabled and not any(p.get("default") for p in enabled):
        for p in profiles:
            p["default"] = p is enabled[0]
    return profiles


def live_figures(profiles: list[dict[str, Any]]) -> dict[str, Any]:
    """What an open form refreshes, per profile slug, from a :func:`build_profile_list` result.

    The status lines, whether the profile can be chosen, and the team picker's labels --
    only the user's own teams are in the profile list, so only they are here.
    """
    tiers = {}
    for profile in profiles:
        view = profile.get("mig") or {}
        figures = {
            k: view.get(k, "") for k in ("gives", "available", "fallback_note", "quota", "reason")
        }
        figures["gpu"] = bool(view.get("gpu"))
        figures["waiting"] = int(view.get("waiting") or 0)
        figures["disabled"] = bool(view.get("disabled"))
        figures["chain"] = view.get("chain", [])
        options = profile.get("profile_options") or {}
        team = (options.get(TEAM_OPTION) or {}).get("choices") or {}
        figures["teams"] = {name: choice["display_name"] for name, choice in team.items()}
        tiers[profile["slug"]] = figures
    return {"tiers": tiers}
