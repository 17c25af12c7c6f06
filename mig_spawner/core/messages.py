"""Every sentence a user reads about a decision: one wording for form, REST, progress, explain.

The rules, in order: the real cause first (which slice type is full and what the fallback
would have been, or which quota and by how much); advice only when it can help (never
"stop a server" to a user with none or when stopping them all would not make room; when
the request exceeds the whole quota, say so and name who can raise it); display names,
not slugs; and numbers that add up ("needs 2; 0 of 1 in use, 1 left").

Pure functions of the decision's facts; :mod:`mig_spawner.core.admission` calls them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .echo import echo

if TYPE_CHECKING:  # pragma: no cover - types only
    from .candidates import CandidateReport
    from .policy import Tier
    from .quota import QuotaCheck, Usage

#: Who can change a quota or a tier; the hub's pages name nobody more specific.
ADMIN = "your hub admin"

_UNITS = {
    "compute_slices": ("compute slice", "compute slices"),
    "per_user_compute_slices": ("compute slice", "compute slices"),
    "memory_gb": ("GB of GPU memory", "GB of GPU memory"),
    "servers": ("server", "servers"),
}


def amount(unit: str, n: float) -> str:
    """'1 compute slice', '2 compute slices', '20 GB of GPU memory', '3 servers'."""
    one, many = _UNITS[unit]
    return f"{n:g} {one if n == 1 else many}"


def quota_owner(team: str | None, unit: str = "compute_slices") -> str:
    """Whose limit it is: a team's quota, a team's per-user limit, or the user's own."""
    if unit == "per_user_compute_slices":
        return f"team {team}'s per-user limit" if team else "your per-user limit"
    return f"team {team}'s GPU quota" if team else "your personal GPU quota"


def team_label(team: str | None) -> str:
    return f"Team {team}" if team else "Your personal quota"


def _usage(check: QuotaCheck, left: bool = True) -> str:
    """'3 of 4 compute slices in use, 1 left' (``left``: add what remains)."""
    if check.limit is None:
        return f"{check.used:g} compute slices in use, no limit"
    unit = "of your own compute slices" if check.unit == "per_user_compute_slices" else ""
    what = unit or _UNITS[check.unit][1]
    rest = f", {max(check.limit - check.used, 0):g} left" if left else ""
    return f"{check.used:g} of {check.limit:g} {what} in use{rest}"


def _full(report: CandidateReport) -> str:
    """'every 1g.10gb on H100 80GB is taken (0 of 4 free)' / '... is cordoned'."""
    if report.outcome == "unusable":
        return f"{report.slice_type.label} cannot be used ({report.reason})"
    if report.total == 0:
        return f"there is no {report.slice_type.label}"
    return f"every {report.slice_type.label} is taken (0 of {report.total} free)"


def _first_blocked(reports: Sequence[CandidateReport]) -> CandidateReport | None:
    return next((r for r in reports if r.outcome in ("full", "unusable")), None)


# ---------------------------------------------------------------------- admitted


def admitted(team: str | None, granted, reports: Sequence[CandidateReport], check) -> str:
    """'Starting on 1 × 1g.10gb · ... on H100 80GB.' (+ the fallback's cause, + the quota)."""
    quota = f" {team_label(team)}: {_usage(check, left=False)} before this server."
    first = reports[0]
    if first.outcome == "granted":
        return f"Starting on {granted.describe()}.{quota}"
    return f"Starting on the larger {granted.describe()}: {_full(first)}.{quota}"


def progress_label(granted, candidates: Sequence[CandidateReport]) -> str:
    """What each line of the progress page starts with: the slice, and on a fallback why,
    '2g.10gb on A100 40GB (every 1g.10gb taken)'."""
    blocked = [r for r in candidates if r.slice_type != granted and r.total]
    full = list(dict.fromkeys(r.slice_type.profile for r in blocked if r.outcome == "full"))
    unusable = list(dict.fromkeys(r.slice_type.profile for r in blocked if r.outcome == "unusable"))
    why = [f"every {' and '.join(full)} taken"] if full else []
    why += [f"{' and '.join(unusable)} unusable"] if unusable else []
    return f"{granted.label} ({'; '.join(why)})" if why else granted.label


def fallback_note(requested_label: str, granted_label: str) -> str:
    """The one-line note the progress page shows once on a fallback."""
    return f"{requested_label} was full, so this server runs on {granted_label}."


# ---------------------------------------------------------------------- refusals


def unknown_tier(slug: str, names: Sequence[str]) -> str:
    return f"There is no tier {echo(slug)} (tiers: {', '.join(names) or 'none'})."


def forbidden_tier(tier: Tier) -> str:
    return (
        f"{tier.display_name!r} is only for members of {', '.join(sorted(tier.groups))}; "
        f"{ADMIN} can add you."
    )


def not_in_team(team: str, member: bool) -> str:
    why = "it has no GPU quota" if member else "you are not a member"
    return f"You cannot spawn for team {echo(team)}: {why}."


def no_matching_gpu(tier: Tier) -> str:
    return (
        f"No GPU in this cluster fits {tier.display_name!r} (it needs "
        f"{tier.compute_slices}g to {tier.max_compute_slices}g with at least "
        f"{tier.min_memory_gb:g} GB); {ADMIN} can change the tier or add such GPUs."
    )


def capacity(tier: Tier, reports: Sequence[CandidateReport]) -> str:
    """Nothing in the chain is free: name each slice type tried and what it held."""
    seen = [_full(r) for r in reports if r.outcome in ("full", "unusable")]
    detail = "; ".join(seen) if seen else "nothing suitable"
    cause = f"No slice for {tier.display_name!r} is free: {detail}."
    if not tier.fallback:
        larger = next((r for r in reports if r.outcome == "fallback-disabled"), None)
        detail = f" ({larger.slice_type.label}: {larger.free} free)" if larger else ""
        cause += f" This tier does not fall back to larger slices{detail}."
    return f"{cause} Try again when a server stops."


def quota(
    tier: Tier,
    team: str | None,
    reports: Sequence[CandidateReport],
    check: QuotaCheck,
    usage: Usage,
) -> str:
    """Over quota: which quota, by how much, and only advice that can help."""
    blocked = next(r for r in reports if r.outcome == "quota")
    owner = quota_owner(team, check.unit)
    need = amount(check.unit, check.needed)
    full_before = _first_blocked([r for r in reports if r.step < blocked.step])
    if full_before is not None:  # the slice asked for is full; the fallback is over quota
        first = _full(full_before)
        cause = (
            f"{first[0].upper()}{first[1:]}, and the fallback, "
            f"{blocked.slice_type.label}, needs {need}"
        )
    else:
        cause = f"{tier.display_name!r} needs {need} ({blocked.slice_type.label})"
    limit = check.limit if check.limit is not None else 0
    if check.needed > limit:
        text = f"{cause}: more than the whole of {owner} ({amount(check.unit, limit)})."
        requested = reports[0].slice_type
        if full_before is not None and _fits_alone(check.unit, requested, limit):
            return f"{text} Try again when a {requested.profile} slice is free."
        return f"{text} It cannot start under this quota; {ADMIN} can raise it."
    advice = []
    if full_before is not None:
        advice.append(f"try again when a {full_before.slice_type.profile} slice is free")
    if usage.own_servers and _stopping_helps(check, usage):
        names = ", ".join(
            f"{name or 'default server'} ({profile})" for name, profile in usage.own_servers
        )
        advice.append(f"stop one of your servers: {names}")
    elif team:
        advice.append(f"try again when another member of team {team} stops a server")
    advice.append(f"ask {ADMIN} for a larger quota")
    said = ", or ".join(advice)
    yours = ""
    if usage.user_compute_slices and check.unit in ("compute_slices", "memory_gb"):
        yours = f" ({amount('compute_slices', usage.user_compute_slices)} of them yours)"
    usage_text = _usage(check).replace(" in use", f" in use{yours}", 1)
    return f"{cause}; {owner} has {usage_text}. {said[0].upper()}{said[1:]}."


def _fits_alone(unit: str, kind, limit: float) -> bool:
    """Would ``kind`` alone fit an empty quota of ``limit`` in ``unit``?"""
    size = {"memory_gb": kind.memory_gb, "servers": 1}.get(unit, kind.compute_slices)
    return size <= limit


def _stopping_helps(check: QuotaCheck, usage: Usage) -> bool:
    """Would stopping all of the user's own servers in this scope make room?"""
    if check.limit is None:
        return False
    if check.unit == "servers":
        own = len(usage.own_servers)
    elif check.unit in ("compute_slices", "per_user_compute_slices"):
        own = usage.user_compute_slices
    else:  # memory: the user's share is not tracked separately; stopping may help
        return bool(usage.own_servers)
    return check.used - own + check.needed <= check.limit


def availability_unknown() -> str:
    return (
        "GPU availability is unknown right now (the hub cannot read the cluster); "
        "please try again in a minute."
    )


def nothing_can_start() -> str:
    """The form's reason for a disabled Start button."""
    return "Nothing can start right now: each option above says why."


# ---------------------------------------------------------------------- the waiting line


def duration(seconds: float) -> str:
    """'40 s', '6 min', '1 h 5 min': what a person reads, rounded to the minute above 1 min."""
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def slice_short(kind) -> str:
    """'1g' for 1g.10gb, 'whole-GPU' for a whole GPU (None: 'GPU')."""
    if kind is None:
        return "GPU"
    return "whole-GPU" if kind.is_whole_gpu else kind.profile.split(".")[0]


def in_line(position: int, tier: Tier, requested, eta_seconds: float | None) -> str:
    """'#2 in line for 1g notebook (H100 80GB): about 6 min' / '...: time unknown'."""
    gpu = f" ({requested.gpu_name})" if requested is not None else ""
    when = "time unknown" if eta_seconds is None else f"about {duration(eta_seconds)}"
    return f"#{position} in line for {tier.display_name}{gpu}: {when}"


def line_timeout(waited_seconds: float, position: int | None, requested) -> str:
    """'waited 30 min, #2 in line; no 1g slice freed'."""
    where = f", #{position} in line" if position else ""
    return f"waited {duration(waited_seconds)}{where}; no {slice_short(requested)} slice freed"


def line_restarted(position: int, grace_seconds: float) -> str:
    """'the hub restarted: your place (#2) is kept for 10 min - press Start'."""
    return (
        f"the hub restarted: your place (#{position}) is kept for {duration(grace_seconds)}"
        " - press Start"
    )


def over_quota_while_full(tier: Tier, team: str | None, check: QuotaCheck) -> str:
    """Every slice is taken and the quota would refuse one anyway: no point in waiting."""
    owner = quota_owner(team, check.unit)
    return (
        f"{tier.display_name!r} needs {amount(check.unit, check.needed)}; {owner} has"
        f" {_usage(check)}, so waiting in line for a slice would not help. Try again when"
        f" your team's use goes down, or ask {ADMIN} for a larger quota."
    )


# ---------------------------------------------------------------------- Kueue mode


def kueue_admitted(granted, reports: Sequence[CandidateReport], room, queued: bool) -> str:
    """Kueue mode: the slice chosen and the room in the team's ClusterQueue.

    'Starting on the larger 2g.20gb ...: ClusterQueue team-vision has 0 of 4
    nvidia.com/mig-1g.10gb left.' / with ``queued``: every slice's ClusterQueue is out of
    room, so the pod waits in Kueue's queue for the preferred one."""
    skipped = [r for r in reports if r.outcome in ("quota", "full", "unusable")]
    why = "; ".join(r.reason if r.outcome == "quota" else _full(r) for r in skipped)
    if queued:
        return (
            f"Queued in Kueue for {granted.describe()}: {room.describe()};"
            " Kueue starts it when quota frees up."
        )
    room_text = f" {room.describe()} before this server." if room is not None else ""
    if not skipped:
        return f"Starting on {granted.describe()}.{room_text}"
    return f"Starting on the larger {granted.describe()}: {why}.{room_text}"


def kueue_no_queue() -> str:
    return (
        f"GPU servers on this hub go through a team's Kueue queue, and you are in no team"
        f" with one; {ADMIN} can add you to a team."
    )


def kueue_in_line(position: int | None, tier: Tier, cluster_queue: str | None, reason: str) -> str:
    """'#3 in line for 1g notebook (ClusterQueue team-vision): <Kueue's reason>'."""
    where = f" (ClusterQueue {cluster_queue})" if cluster_queue else ""
    head = f"#{position} in line" if position else "Waiting in Kueue's queue"
    return f"{head} for {tier.display_name}{where}: {reason or 'waiting for quota'}"
