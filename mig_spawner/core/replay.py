"""Replay recorded demand on a cluster through the hub's own decision code.

Pure. The cluster is a :class:`ClusterState` built from Node objects (a snapshot's, or the
same nodes re-laid out by :func:`relayout_node`); every arrival is decided by
``admission.admit`` with the hub's :class:`Policy` (tiers, fallback chains, quotas), every
departure releases its reservation. Nothing of the decision is re-implemented here.

The hub has no waiting line: a refused user tries again. ``patience_s`` models that: a
request refused for capacity or quota is decided again at each departure, in arrival
order, until ``patience_s`` seconds have passed (0: refused at once, the hub's answer).
"""

from __future__ import annotations

import copy
import heapq
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import admission
from .catalog import MIG_RESOURCE_PREFIX, parse_profile_name
from .cluster import ADDED, ClusterState
from .demand import ABANDONED, DemandRecord
from .layouts import Layout
from .policy import Policy, build_policy

MIG_CONFIG_LABEL = "nvidia.com/mig.config"
MIG_CONFIG_STATE_LABEL = "nvidia.com/mig.config.state"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
_RETRYABLE = (admission.CAPACITY, admission.QUOTA)


@dataclass(frozen=True)
class Request:
    id: int
    t: float  # seconds from the first request
    duration_s: float
    tier: str
    user: str
    team: str | None = None


@dataclass
class ReplayResult:
    requests: int = 0
    served: int = 0
    refused: int = 0
    waits: list[float] = field(default_factory=list)
    fallbacks: int = 0
    slice_seconds: float = 0.0
    capacity_slices: int = 0
    horizon_s: float = 0.0
    #: request id -> (granted profile, start) for the served ones
    granted: dict[int, tuple[str, float]] = field(default_factory=dict)

    @property
    def mean_wait_s(self) -> float:
        return statistics.fmean(self.waits) if self.waits else 0.0

    @property
    def p90_wait_s(self) -> float:
        if not self.waits:
            return 0.0
        ordered = sorted(self.waits)
        return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]

    @property
    def utilisation(self) -> float:
        """Compute-slice seconds held / (slices on the cluster × the replay's span)."""
        whole = self.capacity_slices * self.horizon_s
        return self.slice_seconds / whole if whole else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "served": self.served,
            "refused": self.refused,
            "fallbacks": self.fallbacks,
            "mean_wait_s": round(self.mean_wait_s, 3),
            "p90_wait_s": round(self.p90_wait_s, 3),
            "slice_utilisation": round(self.utilisation, 4),
        }


# --------------------------------------------------------------------------- requests


def profile_tier_slug(profile: str) -> str:
    return "profile-" + parse_profile_name(profile).k8s_name.replace(".", "_")


def profile_policy(profiles: Iterable[str]) -> Policy:
    """One tier per profile asked for (its compute slices and memory, falling back to
    larger slices as the hub's default chains do): the policy when no hub config is given."""
    tiers = {}
    for name in sorted(set(profiles)):
        parsed = parse_profile_name(name)
        tiers[profile_tier_slug(name)] = {
            "display_name": parsed.name,
            "compute_slices": parsed.compute_slices,
            "min_memory_gb": parsed.memory_gb,
        }
    return build_policy(tiers=tiers)


@dataclass
class Requests:
    requests: list[Request]
    #: records left out, by why
    left_out: dict[str, int] = field(default_factory=dict)


def to_requests(
    records: Iterable[DemandRecord], policy: Policy | None, *, default_duration_s: float = 3600.0
) -> Requests:
    """Replayable requests. A refused record has no duration: it gets the median of the
    served ones of its profile (else of all, else ``default_duration_s``). Abandoned claims
    are left out (their start failed; no layout serves them). With ``policy`` None every
    request uses :func:`profile_policy`'s tier of its profile."""
    records = sorted(records, key=lambda r: r.t)
    left: dict[str, int] = {}
    by_profile: dict[str, list[float]] = {}
    for r in records:
        if r.duration_s is not None:
            by_profile.setdefault(r.profile, []).append(r.duration_s)
    every = [d for ds in by_profile.values() for d in ds]
    fallback = statistics.median(every) if every else default_duration_s
    t0 = records[0].t if records else 0.0
    out = []
    for r in records:
        if r.outcome == ABANDONED:
            left["abandoned"] = left.get("abandoned", 0) + 1
            continue
        if policy is None:
            tier = profile_tier_slug(r.profile)
        elif r.tier in policy.tiers:
            tier = r.tier
        else:
            why = f"tier {r.tier!r} not in the config" if r.tier else "no tier (needs --config)"
            left[why] = left.get(why, 0) + 1
            continue
        duration = r.duration_s
        if duration is None:
            known = by_profile.get(r.profile)
            duration = statistics.median(known) if known else fallback
        team = r.team if policy is not None and r.team in policy.team_quotas else None
        user = r.user or f"user-{len(out)}"
        out.append(Request(len(out), r.t - t0, duration, tier, user, team))
    return Requests(out, left)


# --------------------------------------------------------------------------- cluster


def relayout_node(node: Mapping[str, Any], layouts: list[Layout], config: str) -> dict:
    """``node`` as mig-manager and the device plugin leave it after applying ``layouts``:
    its ``nvidia.com/mig-*`` capacity and allocatable, ``mig.config`` and the GFD count
    labels replaced; everything else (labels, taints, conditions) kept."""
    out = copy.deepcopy(dict(node))
    counts: dict[str, int] = {}
    for layout in layouts:
        for profile, n in layout.counts:
            key = parse_profile_name(profile).k8s_name
            counts[key] = counts.get(key, 0) + n
    meta = out.setdefault("metadata", {})
    labels = {
        k: v for k, v in (meta.get("labels") or {}).items() if not k.startswith(MIG_RESOURCE_PREFIX)
    }
    labels[MIG_CONFIG_LABEL] = config
    labels[MIG_CONFIG_STATE_LABEL] = "success"
    for key, n in counts.items():
        labels[f"{MIG_RESOURCE_PREFIX}{key}.count"] = str(n)
    meta["labels"] = labels
    status = out.setdefault("status", {})
    for part in ("capacity", "allocatable"):
        kept = {
            k: v
            for k, v in (status.get(part) or {}).items()
            if not k.startswith(MIG_RESOURCE_PREFIX)
        }
        kept.update({MIG_RESOURCE_PREFIX + k: str(n) for k, n in counts.items()})
        status[part] = kept
    return out


def build_cluster(nodes: Iterable[Mapping[str, Any]]) -> ClusterState:
    state = ClusterState()
    for obj in nodes:
        state.apply_node_event(ADDED, obj)
    return state


# --------------------------------------------------------------------------- replay


def replay(
    state: ClusterState, policy: Policy, requests: list[Request], *, patience_s: float = 0.0
) -> ReplayResult:
    """Feed arrivals and departures in time order through ``admission.admit``."""
    result = ReplayResult(requests=len(requests))
    result.capacity_slices = sum(
        k.compute_slices * n for node in state.nodes.values() for k, n in node.offers.items()
    )
    events: list[tuple[float, int, int, int]] = []  # (time, 0 departure / 1 arrival, seq, id)
    for r in requests:
        heapq.heappush(events, (r.t, 1, r.id, r.id))
    by_id = {r.id: r for r in requests}
    waiting: list[int] = []
    seq = len(requests)
    end = 0.0

    def start(r: Request, now: float) -> str | None:
        """Admit ``r`` now: None if admitted, else the decision's code."""
        nonlocal seq
        request = admission.SpawnRequest(
            user=r.user, tier=r.tier, groups=(r.team,) if r.team else (), team=r.team
        )
        d = admission.admit(request, policy, state, pod_key=f"replay/{r.id}")
        if not d.admitted:
            return d.code
        result.served += 1
        result.waits.append(now - r.t)
        result.fallbacks += d.fallback
        result.slice_seconds += d.granted.compute_slices * r.duration_s
        result.granted[r.id] = (d.granted.profile, now)
        seq += 1
        heapq.heappush(events, (now + r.duration_s, 0, seq, r.id))
        return None

    def expire(now: float) -> None:
        keep = [i for i in waiting if by_id[i].t + patience_s >= now]
        result.refused += len(waiting) - len(keep)
        waiting[:] = keep

    while events:
        now, arrival, _, rid = heapq.heappop(events)
        end = max(end, now)
        expire(now)
        if not arrival:
            state.forget(f"replay/{rid}")
            for i in list(waiting):
                if start(by_id[i], now) is None:
                    waiting.remove(i)
            continue
        code = start(by_id[rid], now)
        if code is None:
            continue
        if patience_s > 0 and code in _RETRYABLE:
            waiting.append(rid)
        else:
            result.refused += 1
    result.refused += len(waiting)
    first = min((r.t for r in requests), default=0.0)
    result.horizon_s = max(end - first, 0.0)
    return result
