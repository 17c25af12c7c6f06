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
from dataclasses import dataclass, field
from typing import Any

from . import messages
from .chains import reachable, tier_chain
from .cluster import ClusterState, Reservation
from .nodes import NodeInfo, SliceType
from .pods import Charge
from .policy import Policy, Tier
from .quota import QuotaCheck, check_quota

# Decision codes (stable: shells and tests switch on them).
ADMITTED = "admitted"
UNKNOWN_TIER = "unknown-tier"
FORBIDDEN_TIER = "forbidden-tier"
NOT_IN_TEAM = "not-in-team"
NO_MATCHING_GPU = "no-matching-gpu"
CAPACITY = "capacity"
QUOTA = "quota"

# Candidate outcomes.
GRANTED, FULL, UNUSABLE, OVER_QUOTA = "granted", "full", "unusable", "quota"
FALLBACK_DISABLED, BEYOND_MAX_STEPS = "fallback-disabled", "beyond-max-steps"


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
class CandidateReport:
    slice_type: SliceType
    step: int
    free: int
    total: int
    outcome: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.slice_type.profile,
            "gpu": self.slice_type.gpu_name,
            "resource": self.slice_type.resource,
            "step": self.step,
            "free": self.free,
            "total": self.total,
            "outcome": self.outcome,
            "reason": self.reason,
        }


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
    candidates: tuple[CandidateReport, ...] = ()
    quota: QuotaCheck | None = None
    charge_mode: str = "granted"
    charge: Charge | None = None
    tier_node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()

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
            "candidates": [c.to_dict() for c in self.candidates],
            "message": self.message,
        }


def _charge(kind: SliceType) -> Charge:
    return Charge(kind.compute_slices, kind.memory_gb)


def _refuse(request: SpawnRequest, code: str, message: str, **kw) -> Decision:
    return Decision(False, code, request.user, request.tier, kw.pop("team", None), message, **kw)


def decide(request: SpawnRequest, policy: Policy, state: ClusterState) -> Decision:
    """Decide, without side effects, what ``request`` gets right now."""
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
    refusals = []
    for team in teams:
        decision = _decide_for_team(request, policy, state, tier, steps, team, scopes_now)
        if decision.admitted:
            return decision
        refusals.append(decision)
    # Prefer a team that was refused for capacity (quota was fine) when reporting.
    return next((d for d in refusals if d.code == CAPACITY), refusals[0])


def _free_nodes(state: ClusterState, tier: Tier, kind: SliceType, avoid=frozenset()):
    nodes = reachable(tier, state.nodes_offering(kind))
    total = sum(n.offers.get(kind, 0) for n in nodes)
    usable = [(state.free(n, kind), n) for n in nodes if n.usable and n.name not in avoid]
    return nodes, total, [(f, n) for f, n in usable if f > 0]


def _decide_for_team(
    request: SpawnRequest,
    policy: Policy,
    state: ClusterState,
    tier: Tier,
    steps: list[list[SliceType]],
    team: str,
    scopes_now: tuple[str, ...],
) -> Decision:
    quota = policy.quota_for(team or None)
    usage = state.usage(team, request.user, scopes_now)
    requested = steps[0][0]
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
    for step, kinds in enumerate(steps):
        for kind in kinds:
            nodes, total, free_nodes = _free_nodes(state, tier, kind, request.avoid_nodes)
            free = sum(f for f, _ in free_nodes)

            def report(outcome, reason, kind=kind, step=step, free=free, total=total):
                reports.append(CandidateReport(kind, step, free, total, outcome, reason))

            if step > 0 and not tier.fallback:
                report(FALLBACK_DISABLED, "this tier does not fall back to larger slices")
                continue
            if step > 0 and tier.max_fallback_steps is not None and step > tier.max_fallback_steps:
                report(
                    BEYOND_MAX_STEPS, f"more than {tier.max_fallback_steps} fallback step(s) away"
                )
                continue
            if not free_nodes:
                if total and not any(n.usable for n in nodes):
                    why = sorted({n.why_unusable() for n in nodes} - {None})
                    report(UNUSABLE, f"its node(s) are {' or '.join(why)}")
                else:
                    report(FULL, f"none free (0 of {total})")
                continue
            charge = _charge(kind if policy.charge == "granted" else requested)
            last_check = check_quota(quota, usage, charge)
            if not last_check.ok:
                first_refusal = first_refusal or last_check
                report(OVER_QUOTA, last_check.reason)
                continue
            # Most free slices first (spreads spawns), then by name: deterministic.
            _, node = min(free_nodes, key=lambda fn: (-fn[0], fn[1].name))
            report(GRANTED, f"{free} of {total} free")
            granted = state.node_slice_type(node, kind)  # the granted node's own figures
            return Decision(
                True,
                ADMITTED,
                request.user,
                tier.slug,
                message=messages.admitted(team, granted, reports, last_check),
                granted=granted,
                node=node.name,
                step=step,
                candidates=tuple(reports),
                quota=last_check,
                charge=charge,
                **common,
            )
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
        quota=last_check,
        **common,
    )


def admit(request: SpawnRequest, policy: Policy, state: ClusterState, *, pod_key: str) -> Decision:
    """Decide and, if admitted, reserve the slice and quota under ``pod_key`` at once."""
    state.release(pod_key)  # a respawn of the same server replaces its old reservation
    decision = decide(request, policy, state)
    if decision.admitted:
        assert decision.granted is not None and decision.node is not None
        state.reserve(
            Reservation(
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
        )
    return decision


def availability(state: ClusterState, tier: Tier) -> list[tuple[SliceType, int, int]]:
    """(slice type, free, total) for each type of the tier's chain, for the spawn form."""
    out = []
    for step in tier_chain(tier, state):
        for kind in step:
            _, total, free_nodes = _free_nodes(state, tier, kind)
            out.append((kind, sum(f for f, _ in free_nodes), total))
    return out


__all__ = [
    "Decision",
    "NodeInfo",
    "SpawnRequest",
    "admit",
    "availability",
    "decide",
]
