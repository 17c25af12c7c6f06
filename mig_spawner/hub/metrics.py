"""Prometheus metrics on the hub's own ``/hub/metrics``, and the one log line per decision.

The series go into ``prometheus_client``'s default ``REGISTRY``, the one JupyterHub's
``/hub/metrics`` handler exports, so there is nothing extra to scrape or authenticate --
but only when the hub constructs its first ``MIGSpawner`` (:func:`register`, called from
``MIGSpawner.__init__``): importing this module creates nothing and registers nothing.

* Cluster figures (slices, team usage and limits, reservations, watch health) are *gauges
  computed at scrape time* by :class:`ClusterCollector` from the hub's ClusterState via
  :mod:`mig_spawner.core.slicemap`: no per-event bookkeeping that could drift from what
  decisions see.
* Decisions are counted, timed and logged by :meth:`HubMetrics.record`, called by
  ``MIGSpawner`` right after ``admission.admit``: one counter by outcome, code and tier,
  one latency histogram and one grep-able log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from ..core import admission, slicemap
from ..core.policy import Policy

if TYPE_CHECKING:
    from .watch import ClusterView

PREFIX = "mig_spawner_"
ADMITTED, FALLBACK, REFUSED = "admitted", "fallback", "refused"
log = logging.getLogger("mig_spawner.hub.metrics")


def outcome(decision: admission.Decision) -> str:
    if not decision.admitted:
        return REFUSED
    return FALLBACK if decision.fallback else ADMITTED


# --------------------------------------------------------------------------- decisions


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

        waiting = GaugeMetricFamily(
            PREFIX + "line_length",
            "Spawns waiting in line for a slice, per tier (hub/waiting.py).",
            labels=["tier"],
        )
        lengths = view.waiting_line.lengths() if view.waiting_line is not None else {}
        for tier in policy.tiers:
            waiting.add_metric([tier], lengths.get(tier, 0))
        yield waiting


class HubMetrics:
    """mig-spawner's series of one hub: decision counters and the cluster collector.

    Built unregistered; :meth:`register` adds them to a registry (the hub's, by
    :func:`register`). ``source`` answers (view, policy) of the view spawners decide
    with, or None before there is one; it is asked at scrape time.
    """

    def __init__(self, source: Callable[[], tuple[ClusterView, Policy] | None]):
        self.decisions = Counter(
            PREFIX + "decisions",
            "Spawn decisions, by outcome (admitted, fallback, refused), reason code and tier.",
            ["outcome", "code", "tier"],
            registry=None,
        )
        self.decision_seconds = Histogram(
            PREFIX + "decision_seconds",
            "Time to decide and reserve one spawn (admission.admit), in seconds.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=None,
        )
        self.line_wait_seconds = Histogram(
            PREFIX + "line_wait_seconds",
            "Seconds a spawn waited in line, by tier and outcome (admitted, cancelled,"
            " timed_out, refused).",
            ["tier", "outcome"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600),
            registry=None,
        )
        self.line_ended = Counter(
            PREFIX + "line_ended",
            "Waits in line that ended, by tier and outcome (admitted, cancelled: stopped or"
            " abandoned, timed_out: max_wait ran out, refused: the quota at admission).",
            ["tier", "outcome"],
            registry=None,
        )
        self.reclaimed_total = Counter(
            PREFIX + "reclaimed",
            "Servers reclaim stopped, by reason (idle: for a spawn waiting in line;"
            " max_session: the tier's longest session).",
            ["reason"],
            registry=None,
        )
        self.collector = ClusterCollector(source)

    def reclaimed(self, reason: str) -> None:
        """One server stopped by reclaim (hub/reclaim.py)."""
        self.reclaimed_total.labels(reason).inc()

    def line_left(self, tier: str, outcome: str, seconds: float) -> None:
        """One wait in line ended (hub/waiting.py)."""
        self.line_wait_seconds.labels(tier, outcome).observe(seconds)
        self.line_ended.labels(tier, outcome).inc()

    def record(
        self,
        decision: admission.Decision,
        *,
        user: str,
        server: str,
        seconds: float,
        logger: logging.Logger | None = None,
    ) -> None:
        """Count, time and log one spawn decision (called right after ``admission.admit``).

        ``logger``: the hub's own log (``spawner.log``), so the line lands where
        JupyterHub's lines do; a plain ``logging.getLogger`` logger has no handler there.
        """
        self.decisions.labels(outcome(decision), decision.code, decision.tier).inc()
        self.decision_seconds.observe(seconds)
        (logger or log).info(decision_line(decision, user=user, server=server, seconds=seconds))

    def _collectors(self) -> tuple:
        return (
            self.decisions,
            self.decision_seconds,
            self.line_wait_seconds,
            self.line_ended,
            self.reclaimed_total,
            self.collector,
        )

    def register(self, registry: CollectorRegistry) -> None:
        for collector in self._collectors():
            registry.register(collector)

    def unregister(self, registry: CollectorRegistry) -> None:
        for collector in self._collectors():
            registry.unregister(collector)


#: (registry, its series): what :func:`register` has done in this process
_registered: list[tuple[CollectorRegistry, HubMetrics]] = []


def register(
    source: Callable[[], tuple[ClusterView, Policy] | None],
    registry: CollectorRegistry | None = None,
) -> HubMetrics:
    """The hub's series in ``registry`` (default: the one ``/hub/metrics`` exports), once.

    Called by each ``MIGSpawner`` as JupyterHub constructs it: the first call registers,
    later calls return the same series (one hub process, one set of series).
    """
    registry = REGISTRY if registry is None else registry
    for known, metrics in _registered:
        if known is registry:
            return metrics
    metrics = HubMetrics(source)
    metrics.register(registry)
    _registered.append((registry, metrics))
    return metrics


#: the policy each hub's spawners decide with, per event loop (tests run several hubs in
#: one process); the collector reads it at scrape time
_POLICIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def note_policy(policy: Policy) -> Policy:
    """Remember ``policy`` as the running loop's hub's, for the collector; returns it."""
    try:
        _POLICIES[asyncio.get_running_loop()] = policy
    except RuntimeError:  # no running loop: no hub to report to
        pass
    return policy


def source(spawner_class) -> tuple[ClusterView, Policy] | None:
    """The view and policy a hub's spawners decide with, for the collector at scrape time.

    ``spawner_class``'s views of the running event loop (the hub's; tests run several hubs
    in one process, each on its own loop) and its current policy (none configured: an
    empty one). None outside a loop or before any spawner started a view.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    views = [view for key, view in spawner_class._views.items() if key[0] is loop]
    if not views:
        return None
    policy = _POLICIES.get(loop)
    return views[-1], policy or Policy(tiers={})
