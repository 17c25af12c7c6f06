"""Prometheus metrics on the hub's own ``/hub/metrics``, and the one log line per decision.

Everything is in ``prometheus_client``'s default ``REGISTRY``, the one JupyterHub's
``/hub/metrics`` handler exports, so there is nothing extra to scrape or authenticate.

* Cluster figures (slices, team usage and limits, reservations, watch health) are *gauges
  computed at scrape time* by :class:`ClusterCollector` from the hub's ClusterState via
  :mod:`mig_spawner.core.slicemap`: no per-event bookkeeping that could drift from what
  decisions see.
* Decisions are counted, timed and logged by :func:`record_decision`, called by
  ``MIGSpawner`` right after ``admission.admit``: one counter by outcome, code and tier,
  one latency histogram, one grep-able log line, and a short in-memory list of recent
  decisions for the admin page.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from ..core import admission, slicemap
from ..core.policy import Policy

if TYPE_CHECKING:
    from .watch import ClusterView

PREFIX = "mig_spawner_"
ADMITTED, FALLBACK, REFUSED = "admitted", "fallback", "refused"
log = logging.getLogger("mig_spawner.hub.metrics")

DECISIONS = Counter(
    PREFIX + "decisions",
    "Spawn decisions, by outcome (admitted, fallback, refused), reason code and tier.",
    ["outcome", "code", "tier"],
)
DECISION_SECONDS = Histogram(
    PREFIX + "decision_seconds",
    "Time to decide and reserve one spawn (admission.admit), in seconds.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


def outcome(decision: admission.Decision) -> str:
    if not decision.admitted:
        return REFUSED
    return FALLBACK if decision.fallback else ADMITTED


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class DecisionRecord:
    """One spawn decision as the admin page lists it."""

    at: float  # time.time()
    user: str
    team: str
    tier: str
    server: str
    requested: str
    granted: str
    gpu: str
    node: str
    outcome: str
    code: str
    message: str


#: The last decisions of this hub process, newest last (refusals are what admins look for).
RECENT: deque[DecisionRecord] = deque(maxlen=200)


def _kv(key: str, value: Any) -> str:
    text = "-" if value in (None, "") else str(value)
    if any(c in text for c in ' "=\\\n\t') or not text.isprintable():
        text = json.dumps(text, ensure_ascii=False)
    return f"{key}={text}"


def decision_line(decision: admission.Decision, *, user: str, server: str, seconds: float) -> str:
    """``decision user=alice team=vision tier=notebook requested=1g.10gb granted=...``.

    Fixed keys in a fixed order, ``-`` for none, values with spaces JSON-quoted: grep for
    ``outcome=refused`` or ``code=quota``, or cut fields with awk.
    """
    fields = [
        ("user", user),
        ("server", server),
        ("team", decision.team),
        ("tier", decision.tier),
        ("requested", decision.requested.profile if decision.requested else None),
        ("granted", decision.granted.profile if decision.granted else None),
        ("gpu", decision.granted.gpu_name if decision.granted else None),
        ("node", decision.node),
        ("outcome", outcome(decision)),
        ("code", decision.code),
        ("ms", f"{seconds * 1000:.2f}"),
    ]
    line = "decision " + " ".join(_kv(k, v) for k, v in fields)
    if not decision.admitted:
        line += " " + _kv("reason", decision.message)
    return line


def record_decision(
    decision: admission.Decision,
    *,
    user: str,
    server: str,
    seconds: float,
    logger: logging.Logger | None = None,
) -> DecisionRecord:
    """Count, time and log one spawn decision; keep it for the admin page.

    ``logger``: the hub's own log (``spawner.log``), so the line lands where JupyterHub's
    lines do; a plain ``logging.getLogger`` logger has no handler in a hub process.
    """
    kind = outcome(decision)
    DECISIONS.labels(kind, decision.code, decision.tier).inc()
    DECISION_SECONDS.observe(seconds)
    (logger or log).info(decision_line(decision, user=user, server=server, seconds=seconds))
    record = DecisionRecord(
        at=time.time(),
        user=user,
        team=decision.team or "",
        tier=decision.tier,
        server=server,
        requested=decision.requested.profile if decision.requested else "",
        granted=decision.granted.profile if decision.granted else "",
        gpu=decision.granted.gpu_name if decision.granted else "",
        node=decision.node or "",
        outcome=kind,
        code=decision.code,
        message=decision.message,
    )
    RECENT.append(record)
    return record


def recent_refusals(limit: int = 20) -> list[DecisionRecord]:
    """The last ``limit`` refusals, newest first."""
    return [r for r in reversed(RECENT) if r.outcome == REFUSED][:limit]


# --------------------------------------------------------------------------- cluster


class ClusterCollector:
    """Gauges read from the hub's cluster view at scrape time.

    ``source`` returns (view, policy) of the view spawners use now, or None before any
    spawner has started one (then only ``mig_spawner_cluster_view_healthy 0`` is exported).
    """

    def __init__(self, source: Callable[[], tuple[ClusterView, Policy] | None]):
        self.source = source

    def describe(self) -> Iterator[Any]:
        return iter(())  # unchecked collector: families depend on the cluster

    def collect(self) -> Iterator[GaugeMetricFamily]:
        current = self.source()
        healthy = GaugeMetricFamily(
            PREFIX + "cluster_view_healthy",
            "1 while the hub's list+watch of nodes and pods is synced, else 0 "
            "(spawns are refused as 'availability unknown').",
        )
        if current is None:
            healthy.add_metric([], 0)
            yield healthy
            return
        view, policy = current
        healthy.add_metric([], 1 if view.known else 0)
        yield healthy
        state = view.state

        since = GaugeMetricFamily(
            PREFIX + "seconds_since_last_watch_event",
            "Seconds since the last list or watch event, per resource (nodes, pods).",
            labels=["resource"],
        )
        for resource, seconds in sorted(view.seconds_since_last_event().items()):
            if seconds is not None:
                since.add_metric([resource], seconds)
        yield since

        labels = ["node", "gpu", "profile", "resource"]
        families = {
            name: GaugeMetricFamily(PREFIX + name, text, labels=labels)
            for name, text in (
                ("slices_capacity", "MIG slices (or whole GPUs) a node offers."),
                ("slices_free", "Slices neither a pod nor a reservation holds."),
                ("slices_held", "Slices held by pods or by reservations in flight."),
            )
        }
        for row in slicemap.capacity(state):
            kind = row.slice_type
            values = [row.node, kind.gpu_name, kind.profile, kind.resource]
            families["slices_capacity"].add_metric(values, row.total)
            families["slices_free"].add_metric(values, row.free)
            families["slices_held"].add_metric(values, row.held)
        yield from families.values()

        nodes = GaugeMetricFamily(
            PREFIX + "nodes",
            "GPU nodes by whether new servers may land on them (usable, cordoned, NotReady).",
            labels=["state"],
        )
        counts = {"usable": 0, "cordoned": 0, "NotReady": 0}
        for node in state.nodes.values():
            if node.offers:
                counts[node.why_unusable() or "usable"] += 1
        for name, n in counts.items():
            nodes.add_metric([name], n)
        yield nodes

        usage = GaugeMetricFamily(
            PREFIX + "team_usage",
            "What a team holds now, per quota unit (compute_slices, memory_gb, servers).",
            labels=["team", "unit"],
        )
        limit = GaugeMetricFamily(
            PREFIX + "team_quota_limit",
            "A team's configured limit per quota unit (absent: no limit).",
            labels=["team", "unit"],
        )
        for team in slicemap.team_rows(policy, state):
            for unit, used, cap in team.limits:
                usage.add_metric([team.team, unit], used)
                if cap is not None:
                    limit.add_metric([team.team, unit], cap)
        yield usage
        yield limit

        reservations = GaugeMetricFamily(
            PREFIX + "reservations_in_flight",
            "Admitted spawns whose pod the watch has not yet seen bound to a node.",
        )
        reservations.add_metric([], len(state.reservations))
        yield reservations


_current: dict[str, Any] = {}


def set_current(view: ClusterView, policy: Policy | None) -> None:
    """Point the collector (and the admin page) at the view and policy spawners use now.

    ``policy`` None (a configuration error, already logged) keeps the last good one.
    """
    _current["view"] = view
    if policy is not None or "policy" not in _current:
        _current["policy"] = policy or Policy(tiers={})


def clear_current() -> None:
    """Forget the view (hub shutdown, tests): the collector then exports health 0 only."""
    _current.clear()


def current() -> tuple[ClusterView, Policy] | None:
    view = _current.get("view")
    if view is None:
        return None
    return view, _current["policy"]


COLLECTOR = ClusterCollector(current)
REGISTRY.register(COLLECTOR)
