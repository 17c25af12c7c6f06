"""The one admission decision: what does this user get for this tier, and why.

``decide`` is pure: (request, policy, cluster state incl. reservations) -> ``Decision``.
``admit`` decides and, when admitted, reserves the slice and the quota in the same
synchronous step -- no ``await`` between them -- so concurrent spawns on one event loop
can never double-book a slice or overshoot a quota.

The spawn form, ``MIGSpawner.start()`` and ``mig-spawner explain`` all
call this module; none of them re-implements any part of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import messages
from .candidates import (
    BEYOND_MAX_STEPS,
    FALLBACK_DISABLED,
    FULL,
    GRANTED,
    NOT_NEEDED,
    OVER_QUOTA,
    UNUSABLE,
    CandidateReport,
)
from .chains import tier_chain
from .cluster import ClusterState, Reservation
from .kueue import Room
from .memo import VersionMemo
from .nodes import NodeInfo, SliceType
from .pods import Charge
from .policy import Policy, Tier
from .quota import QuotaCheck, check_quota
from .reach import grant_node
from .snapshot import Snapshot

# Decision codes (stable: shells and tests switch on them).
ADMITTED = "admitted"
UNKNOWN_TIER = "unknown-tier"
FORBIDDEN_TIER = "forbidden-tier"
NOT_IN_TEAM = "not-in-team"
NO_MATCHING_GPU = "no-matching-gpu"
CAPACITY = "capacity"
QUOTA = "quota"
NO_QUEUE = "no-queue"  # Kueue mode: a user in no team, and no default LocalQueue


@dataclass(frozen=True)
class SpawnRequest:
    user: str
    tier: str
    groups: tuple[str, ...] = ()
    team: str | None = None  # None: the first of the user's teams with room
    server_name: str = ""
    #: nodes not to grant on: where this spawn's pod already failed to schedule
    avoid_nodes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    admitted: bool
    code: str
    user: str
    tier: str
    team: str | None
    message: str
    requested: SliceType | None = None
    granted: SliceType | None = None
    node: str | None = None
    step: int = 0
    #: the candidates tried, in order, up to and including the granted one
    candidates: tuple[CandidateReport, ...] = ()
    #: the whole chain walked: ``candidates`` plus the rest as NOT_NEEDED (free/total each)
    chain: tuple[CandidateReport, ...] = ()
    #: one decision per team the request could use (the chosen one among them)
    per_team: tuple[Decision, ...] = ()
    quota: QuotaCheck | None = None
    charge_mode: str = "granted"
    charge: Charge | None = None
    tier_node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    #: Kueue mode: the room in the team's ClusterQueue for the granted slice (None: not
    #: known, or the built-in quotas)
    kueue_room: Room | None = None

    @property
    def fallback(self) -> bool:
        return self.granted is not None and self.step > 0

    @property
    def node_selector(self) -> dict[str, str]:
        selector = dict(self.tier_node_selector)
        if self.granted is not None:
            selector.update(self.granted.node_selector)
        return selector

    def to_dict(self) -> dict[str, Any]:
        return {
            "admitted": self.admitted,
            "code": self.code,
            "user": self.user,
            "tier": self.tier,
            "team": self.team,
            "requested_profile": self.requested.profile if self.requested else None,
            "granted_profile": self.granted.profile if self.granted else None,
            "granted_resource": self.granted.resource if self.granted else None,
            "granted_gpu": self.granted.gpu_name if self.granted else None,
            "node": self.node,
            "node_selector": self.node_selector if self.granted else {},
            "tolerations": [dict(t) for t in self.tolerations],
            "fallback": self.fallback,
            "quota": self.quota.to_dict(self.charge_mode) if self.quota else None,
            "kueue": self.kueue_room.describe() if self.kueue_room else None,
            "candidates": [c.to_dict() for c in self.candidates],
            "message": self.message,
        }


def _charge(kind: SliceType) -> Charge:
    return Charge(kind.compute_slices, kind.memory_gb)


def _refuse(request: SpawnRequest, code: str, message: str, **kw) -> Decision:
    return Decision(False, code, request.user, request.tier, kw.pop("team", None), message, **kw)


def decide(request: SpawnRequest, policy: Policy, state: ClusterState | Snapshot) -> Decision:
    """Decide, without side effects, what ``request`` gets right now.

    Reads one :class:`~.snapshot.Snapshot` (``state``, or one taken of the cache ``state``).
    """
    state = state.snapshot()
    tier = policy.tier(request.tier)
    if tier is None:
        return _refuse(request, UNKNOWN_TIER, messages.unknown_tier(request.tier, policy.tiers))
    groups = frozenset(request.groups)
    if not tier.visible_to(groups):
        return _refuse(request, FORBIDDEN_TIER, messages.forbidden_tier(tier))
    teams = policy.teams_for(groups)
    if request.team is not None:
        if request.team not in teams:
            message = messages.not_in_team(request.team, member=request.team in groups)
            return _refuse(request, NOT_IN_TEAM, message)
        teams = [request.team]
    elif not teams:
        teams = [""]

    scopes_now = tuple(policy.teams_for(groups)) or ("",)
    steps = tier_chain(tier, state)
    if not steps:
        return _refuse(
            request,
            NO_MATCHING_GPU,
            messages.no_matching_gpu(tier),
            team=teams[0] or None,
        )
    rows = chain_rows(tier, state, policy)
    if request.avoid_nodes:
        rows = _avoiding(rows, tier, state, request.avoid_nodes, policy)
    decisions = [
        _decide_for_team(request, policy, state, tier, rows, team, scopes_now) for team in teams
    ]
    chosen = next((d for d in decisions if d.admitted), None)
    if chosen is None:
        # Prefer a team that was refused for capacity (quota was fine) when reporting.
        chosen = next((d for d in decisions if d.code == CAPACITY), decisions[0])
    return replace(chosen, per_team=tuple(decisions))


@dataclass(frozen=True)
class ChainRow:
    """One candidate of a tier's chain, as the cluster has it now (team-independent)."""

    slice_type: SliceType
    step: int
    free: int  # free slices on usable, reachable nodes
    total: int  # slices on every reachable node
    #: the node a grant would use: one the fewest tiers reach (core/reach.py), then
    #: the most free, then by name
    node: str | None
    usable_nodes: int
    unusable_reasons: tuple[str, ...]


#: chain rows per (cache, version), tier and policy
_ROWS = VersionMemo()


def chain_rows(
    tier: Tier, state: ClusterState | Snapshot, policy: Policy | None = None
) -> tuple[ChainRow, ...]:
    """The tier's chain with each candidate's figures: O(chain x log N), cached per version.

    ``policy``: the tiers whose reaches the node to grant keeps servable
    (:func:`~.reach.grant_node`); without one, the node is the most free, then by name.
    """
    state = state.snapshot()

    def compute() -> tuple[ChainRow, ...]:
        rows = []
        for step, kinds in enumerate(tier_chain(tier, state)):
            for kind in kinds:
                index = state.slice_index(kind, tier.node_selector, tier.tolerations)
                rows.append(
                    ChainRow(
                        kind,
                        step,
                        index.free,
                        index.total,
                        grant_node(tier, kind, policy, state),
                        index.usable,
                        tuple(index.unusable_reasons()),
                    )
                )
        return tuple(rows)

    return _ROWS.get(state.key, (tier, policy), compute)


def _avoiding(
    rows: tuple[ChainRow, ...],
    tier: Tier,
    state: Snapshot,
    avoid: frozenset[str],
    policy: Policy | None,
) -> tuple[ChainRow, ...]:
    """``rows`` as if the ``avoid`` nodes had no free slice: O(chain x |avoid| x log N).

    Their slices still count in the totals and they still count as usable nodes (the
    candidate is full for this spawn, not unusable).
    """
    out = []
    for row in rows:
        index = state.slice_index(row.slice_type, tier.node_selector, tier.tolerations)
        held_back = sum(max(index.members.get(name, 0), 0) for name in avoid)
        node = grant_node(tier, row.slice_type, policy, state, avoid)
        out.append(replace(row, free=row.free - held_back, node=node))
    return tuple(out)


def _decide_for_team(
    request: SpawnRequest,
    policy: Policy,
    state: Snapshot,
    tier: Tier,
    rows: tuple[ChainRow, ...],
    team: str,
    scopes_now: tuple[str, ...],
) -> Decision:
    quota = policy.quota_for(team or None)
    usage = state.usage(team, request.user, scopes_now)
    requested = rows[0].slice_type
    reports: list[CandidateReport] = []
    last_check: QuotaCheck | None = None
    first_refusal: QuotaCheck | None = None  # the smallest candidate the quota refused
    common = dict(
        team=team or None,
        requested=requested,
        charge_mode=policy.charge,
        tier_node_selector=dict(tier.node_selector),
        tolerations=tier.tolerations,
    )
    queue = policy.kueue.queue_for(team or None) if policy.kueue else None
    if policy.kueue and queue is None:
        return _refuse(request, NO_QUEUE, messages.kueue_no_queue(), **common)
    #: Kueue mode: the first candidate with a free slice but no room in the ClusterQueue
    held: tuple[int, ChainRow, QuotaCheck, Room] | None = None

    def grant(i: int, row: ChainRow, check: QuotaCheck, room: Room | None, queued: bool):
        kind = row.slice_type
        granted = state.node_slice_type(state.node(row.node), kind)  # its own figures
        figures = f"{row.free} of {row.total} free"
        done = [
            *reports[:i],
            CandidateReport(kind, row.step, row.free, row.total, GRANTED, figures),
        ]
        rest = tuple(
            CandidateReport(
                r.slice_type, r.step, r.free, r.total, NOT_NEEDED, f"{r.free} of {r.total} free"
            )
            for r in rows[i + 1 :]
        )
        if queue is not None:
            message = messages.kueue_admitted(granted, done, room, queued)
        else:
            message = messages.admitted(team, granted, done, check)
        return Decision(
            True,
            ADMITTED,
            request.user,
            tier.slug,
            message=message,
            granted=granted,
            node=row.node,
            step=row.step,
            candidates=tuple(done),
            chain=tuple(done) + rest,
            quota=check,
            charge=_charge(kind if policy.charge == "granted" else requested),
            kueue_room=room,
            **common,
        )

    for i, row in enumerate(rows):
        kind, step, free, total = row.slice_type, row.step, row.free, row.total

        def report(outcome, reason, kind=kind, step=step, free=free, total=total):
            reports.append(CandidateReport(kind, step, free, total, outcome, reason))

        if step > 0 and not tier.fallback:
            report(FALLBACK_DISABLED, "this tier does not fall back to larger slices")
            continue
        if step > 0 and tier.max_fallback_steps is not None and step > tier.max_fallback_steps:
            report(BEYOND_MAX_STEPS, f"more than {tier.max_fallback_steps} fallback step(s) away")
            continue
        if row.node is None:
            if total and not row.usable_nodes:
                report(UNUSABLE, f"its node(s) are {' or '.join(row.unusable_reasons)}")
            else:
                report(FULL, f"none free (0 of {total})")
            continue
        charge = _charge(kind if policy.charge == "granted" else requested)
        last_check = check_quota(quota, usage, charge)
        if not last_check.ok:
            first_refusal = first_refusal or last_check
            report(OVER_QUOTA, last_check.reason)
            continue
        room = state.kueue.room(state.kueue_namespace, queue, kind.resource) if queue else None
        if room is not None and room.left < 1:
            held = held or (i, row, last_check, room)
            report(OVER_QUOTA, room.describe())
            continue
        return grant(i, row, last_check, room, queued=False)
    if held is not None:  # no room in the ClusterQueue anywhere: Kueue holds the pod
        return grant(*held, queued=True)
    quota_blocked = any(r.outcome == OVER_QUOTA for r in reports)
    code = QUOTA if quota_blocked else CAPACITY
    if first_refusal is not None:
        last_check = first_refusal  # the figures of the candidate the message names
    elif last_check is None:
        last_check = check_quota(quota, usage, _charge(requested))
    message = (
        messages.quota(tier, team, reports, last_check, usage)
        if quota_blocked
        else messages.capacity(tier, reports)
    )
    return Decision(
        False,
        code,
        request.user,
        tier.slug,
        message=message,
        candidates=tuple(reports),
        chain=tuple(reports),
        quota=last_check,
        **common,
    )


def admit(request: SpawnRequest, policy: Policy, state: ClusterState, *, pod_key: str) -> Decision:
    """Decide on a snapshot of the cache and, if admitted, assume the spawn under ``pod_key``.

    One synchronous step, no ``await``: forget the server's previous assumption (a respawn
    replaces it), take a snapshot, decide on it, assume the grant on the cache.
    """
    state.forget(pod_key)
    view = state.snapshot()
    decision = decide(request, policy, view)
    if decision.admitted:
        state.assume(reservation_for(decision, request, pod_key), seen=view)
    return decision


def requested_quota(
    decision: Decision, request: SpawnRequest, policy: Policy, state: ClusterState | Snapshot
) -> QuotaCheck | None:
    """The quota check of the slice ``request`` asks for (its tier's first), for the
    decision's team now: what a freed slice of that size would be charged. None when the
    decision names no requested slice (an unknown tier, or one no GPU offers)."""
    if decision.requested is None:
        return None
    team = decision.team or ""
    scopes = tuple(policy.teams_for(frozenset(request.groups))) or ("",)
    usage = state.snapshot().usage(team, request.user, scopes)
    return check_quota(policy.quota_for(team or None), usage, _charge(decision.requested))


def may_wait(
    decision: Decision, request: SpawnRequest, policy: Policy, state: ClusterState | Snapshot
) -> bool:
    """Whether a refused ``decision`` is one a freed slice could turn into a grant, so that
    the spawn may wait in line: every slice its tier may use is taken (capacity), or only a
    larger fallback slice was over the quota while a slice of the requested size, taken now,
    would fit it."""
    if decision.admitted or decision.code not in (CAPACITY, QUOTA):
        return False
    if decision.code == CAPACITY:
        return True
    if not any(c.outcome in (FULL, UNUSABLE) for c in decision.candidates):
        return False
    check = requested_quota(decision, request, policy, state)
    return check is not None and check.ok


def reservation_for(decision: Decision, request: SpawnRequest, pod_key: str) -> Reservation:
    """What an admitted decision holds on the cache until its pod is seen."""
    assert decision.granted is not None and decision.node is not None
    return Reservation(
        key=pod_key,
        user=request.user,
        team=decision.team or "",
        slice_type=decision.granted,
        node=decision.node,
        charge=decision.charge or _charge(decision.granted),
        server_name=request.server_name,
        tier=decision.tier,
        requested_profile=decision.requested.profile if decision.requested else "",
        node_selector=dict(decision.node_selector),
        tolerations=decision.tolerations,
    )


def availability(state: ClusterState | Snapshot, tier: Tier) -> list[tuple[SliceType, int, int]]:
    """(slice type, free, total) for each type of the tier's chain."""
    return [(r.slice_type, r.free, r.total) for r in chain_rows(tier, state)]


__all__ = [  # the candidates' outcomes and reports live in core/candidates.py
    "BEYOND_MAX_STEPS",
    "FALLBACK_DISABLED",
    "FULL",
    "GRANTED",
    "NOT_NEEDED",
    "OVER_QUOTA",
    "UNUSABLE",
    "CandidateReport",
    "ChainRow",
    "Decision",
    "NodeInfo",
    "SpawnRequest",
    "admit",
    "availability",
    "chain_rows",
    "decide",
]
