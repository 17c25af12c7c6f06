"""Kueue mode: Kueue's objects as a decision reads them (the setting: :mod:`.kueueconfig`).

With ``kueue`` set, Kueue (kueue.x-k8s.io/v1beta2) admits by quota: each team maps to a
LocalQueue in the pods' namespace, each LocalQueue to a ClusterQueue that holds the
team's quota (nominal, borrowing from a cohort, preemption). mig-spawner still chooses
*which* slice: from live capacity, the tier's chain, and the room left in the team's
ClusterQueue, read here from the ClusterQueue's status as the watch delivers it.

Pure: the API's dicts in, values out. Anything garbled reads as "not known" (None), never
as an exception: a ClusterQueue whose status Kueue has not yet written has no room figure,
and the decision then leaves quota to Kueue.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from .kueueconfig import (  # noqa: F401 - the names Kueue mode reads, in one place
    GATE,
    GROUP,
    PRIORITY_LABEL,
    QUEUE_LABEL,
    TERMINATION_TARGET,
    VERSION,
    VISIBILITY_GROUP,
    KueueSettings,
)

# ---------------------------------------------------------------------- quantities

_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)")


def quantity(value: Any) -> float | None:
    """A Kubernetes quantity ("4", 4, "500m", "2Gi") as a number; None when garbled."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    m = _QUANTITY.fullmatch(value.strip())
    if m is None:
        return None
    try:
        return float(Decimal(m.group(1)) * _SUFFIXES[m.group(2)])
    except InvalidOperation:
        return None


# ---------------------------------------------------------------------- ClusterQueues


@dataclass(frozen=True)
class FlavorQuota:
    nominal: float
    borrowing_limit: float | None = None  # None: no limit
    lending_limit: float | None = None  # None: all its unused nominal may be lent


@dataclass(frozen=True)
class ClusterQueueInfo:
    name: str
    cohort: str | None
    #: (flavor, resource) -> its quota, in the spec's order
    quotas: Mapping[tuple[str, str], FlavorQuota]
    #: (flavor, resource) -> reserved now (status.flavorsReservation); None: no status yet
    used: Mapping[tuple[str, str], float] | None


def _dicts(value: Any) -> list[Mapping]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _meta(obj: Any) -> Mapping:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    return meta if isinstance(meta, Mapping) else {}


def parse_cluster_queue(obj: Any) -> ClusterQueueInfo | None:
    """A ClusterQueue dict as the API returns it; None when it has no name."""
    name = _meta(obj).get("name")
    if not isinstance(name, str) or not name:
        return None
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    quotas: dict[tuple[str, str], FlavorQuota] = {}
    for group in _dicts(spec.get("resourceGroups")):
        for flavor in _dicts(group.get("flavors")):
            fname = flavor.get("name")
            for res in _dicts(flavor.get("resources")):
                nominal = quantity(res.get("nominalQuota", 0))
                if not isinstance(fname, str) or not isinstance(res.get("name"), str):
                    continue
                if nominal is None:
                    continue
                borrow = res.get("borrowingLimit")
                lend = res.get("lendingLimit")
                quotas[(fname, res["name"])] = FlavorQuota(
                    nominal,
                    None if borrow is None else quantity(borrow),
                    None if lend is None else quantity(lend),
                )
    cohort = spec.get("cohortName", spec.get("cohort"))
    status = obj.get("status")
    used: dict[tuple[str, str], float] | None = None
    if isinstance(status, Mapping):
        key = "flavorsReservation" if "flavorsReservation" in status else "flavorsUsage"
        used = {}
        for flavor in _dicts(status.get(key)):
            for res in _dicts(flavor.get("resources")):
                total = quantity(res.get("total", 0))
                named = isinstance(flavor.get("name"), str) and isinstance(res.get("name"), str)
                if named and total is not None:
                    used[(flavor["name"], res["name"])] = total
    return ClusterQueueInfo(
        name,
        cohort if isinstance(cohort, str) and cohort else None,
        MappingProxyType(quotas),
        None if used is None else MappingProxyType(used),
    )


@dataclass(frozen=True)
class Room:
    """What one ClusterQueue has of one resource: its nominal quota, what is reserved, and
    what one more workload could get now, counting what it may borrow from its cohort."""

    cluster_queue: str
    resource: str
    nominal: float
    used: float
    left: float  # incl. borrowable
    borrowable: float  # the part of ``left`` that is the cohort's

    def describe(self) -> str:
        """'ClusterQueue team-vision has 0 of 4 nvidia.com/mig-1g.10gb left'."""
        extra = f" (incl. {self.borrowable:g} borrowed from its cohort)" if self.borrowable else ""
        return (
            f"ClusterQueue {self.cluster_queue} has {max(self.left, 0):g} of"
            f" {self.nominal:g} {self.resource} left{extra}"
        )


def room(
    queues: Mapping[str, ClusterQueueInfo],
    name: str,
    resource: str,
    reserved: Mapping[tuple[str, str, str], float] | None = None,
) -> Room | None:
    """The room for ``resource`` in ClusterQueue ``name``; None when not known (no such
    ClusterQueue, no status yet, or the resource is in none of its flavors).

    ``reserved``: (ClusterQueue, flavor, resource) -> what the Workloads seen hold there
    (:func:`reserved_by`). Kueue writes a ClusterQueue's status some seconds after it
    admits a Workload, so each figure is the larger of the status's and the Workloads'.

    Per flavor holding the resource: its own unused nominal, plus what the other
    ClusterQueues of its cohort leave unused of theirs (each capped by its lendingLimit),
    capped by its own borrowingLimit less what it already borrows. Summed over flavors
    (Kueue tries them in order; any will do for a one-pod workload)."""
    cq = queues.get(name)
    if cq is None or cq.used is None:
        return None
    keys = [k for k in cq.quotas if k[1] == resource]
    if not keys:
        return None
    nominal = used = left = borrowable = 0.0
    reserved = reserved or {}

    def used_in(q: ClusterQueueInfo, key: tuple[str, str]) -> float:
        return max(q.used.get(key, 0.0) if q.used else 0.0, reserved.get((q.name, *key), 0.0))

    for key in keys:
        quota = cq.quotas[key]
        mine = used_in(cq, key)
        own = max(quota.nominal - mine, 0.0)
        lend = 0.0
        if cq.cohort is not None:
            for other in queues.values():
                if other.name == name or other.cohort != cq.cohort or other.used is None:
                    continue
                theirs = other.quotas.get(key)
                if theirs is None:
                    continue
                spare = max(theirs.nominal - used_in(other, key), 0.0)
                if theirs.lending_limit is not None:
                    spare = min(spare, theirs.lending_limit)
                lend += spare
            if quota.borrowing_limit is not None:
                lend = min(lend, max(quota.borrowing_limit - max(mine - quota.nominal, 0.0), 0.0))
        nominal += quota.nominal
        used += mine
        left += own + lend
        borrowable += lend
    return Room(name, resource, nominal, used, left, borrowable)


# ---------------------------------------------------------------------- Workloads

PENDING, RESERVED, ADMITTED = "pending", "quota-reserved", "admitted"
EVICTED, PREEMPTED, FINISHED = "evicted", "preempted", "finished"


@dataclass(frozen=True)
class WorkloadState:
    namespace: str
    name: str
    phase: str  # one of the constants above
    reason: str = ""
    message: str = ""
    cluster_queue: str | None = None
    #: the uids of the pods it owns (the plain-Pod integration: one, the notebook's)
    pod_uids: tuple[str, ...] = ()
    #: (flavor, resource) -> what its admission reserves (status.admission), while held
    usage: Mapping[tuple[str, str], float] = field(default_factory=dict)

    @property
    def stopped_by_kueue(self) -> bool:
        return self.phase in (EVICTED, PREEMPTED)


def _conditions(status: Mapping) -> dict[str, Mapping]:
    return {
        c["type"]: c for c in _dicts(status.get("conditions")) if isinstance(c.get("type"), str)
    }


def _true(cond: Mapping | None) -> bool:
    return cond is not None and cond.get("status") == "True"


def _text(cond: Mapping | None, key: str) -> str:
    value = cond.get(key) if cond else None
    return value if isinstance(value, str) else ""


def parse_workload(obj: Any) -> WorkloadState | None:
    """A Workload dict as the API returns it; None when it has no name."""
    meta = _meta(obj)
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        return None
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    conds = _conditions(status)
    admission = status.get("admission") if isinstance(status.get("admission"), Mapping) else {}
    cq = admission.get("clusterQueue")
    uids = tuple(
        ref["uid"]
        for ref in _dicts(meta.get("ownerReferences"))
        if ref.get("kind") == "Pod" and isinstance(ref.get("uid"), str)
    )
    phase, cond = PENDING, conds.get("QuotaReserved")
    if _true(conds.get("Finished")):
        phase, cond = FINISHED, conds["Finished"]
    elif _true(conds.get("Preempted")):
        phase, cond = PREEMPTED, conds["Preempted"]
    elif _true(conds.get("Evicted")):
        phase, cond = EVICTED, conds["Evicted"]
    elif _true(conds.get("Admitted")):
        phase, cond = ADMITTED, conds["Admitted"]
    elif _true(cond):
        phase = RESERVED
    usage: dict[tuple[str, str], float] = {}
    if phase in (RESERVED, ADMITTED):
        for assignment in _dicts(admission.get("podSetAssignments")):
            flavors = assignment.get("flavors")
            amounts = assignment.get("resourceUsage")
            if not isinstance(flavors, Mapping) or not isinstance(amounts, Mapping):
                continue
            for res, flavor in flavors.items():
                n = quantity(amounts.get(res))
                if isinstance(flavor, str) and isinstance(res, str) and n is not None:
                    usage[(flavor, res)] = usage.get((flavor, res), 0.0) + n
    return WorkloadState(
        namespace if isinstance(namespace, str) else "",
        name,
        phase,
        _text(cond, "reason"),
        _text(cond, "message"),
        cq if isinstance(cq, str) and cq else None,
        uids,
        MappingProxyType(usage),
    )


def reserved_by(workloads: Any) -> dict[tuple[str, str, str], float]:
    """(ClusterQueue, flavor, resource) -> what the given Workloads hold now."""
    out: dict[tuple[str, str, str], float] = {}
    for wl in workloads:
        if wl.cluster_queue is None:
            continue
        for (flavor, res), n in wl.usage.items():
            key = (wl.cluster_queue, flavor, res)
            out[key] = out.get(key, 0.0) + n
    return out


def parse_local_queue(obj: Any) -> tuple[str, str, str | None] | None:
    """(namespace, name, its ClusterQueue or None) of a LocalQueue dict; None if nameless."""
    meta = _meta(obj)
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        return None
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    cq = spec.get("clusterQueue")
    return (
        namespace if isinstance(namespace, str) else "",
        name,
        cq if isinstance(cq, str) and cq else None,
    )


def position(answer: Any, workload: str) -> tuple[int, int] | None:
    """(1-based position in the LocalQueue, in the ClusterQueue) of ``workload`` in a
    ``pendingworkloads`` answer (PendingWorkloadsSummary); None when not in it or garbled."""
    items = answer.get("items") if isinstance(answer, Mapping) else None
    for item in _dicts(items):
        if _meta(item).get("name") != workload:
            continue
        local, cluster = item.get("positionInLocalQueue"), item.get("positionInClusterQueue")
        if isinstance(local, int) and isinstance(cluster, int) and not isinstance(local, bool):
            return local + 1, cluster + 1
        return None
    return None


# ---------------------------------------------------------------------- what the watch keeps

KINDS = ("clusterqueues", "localqueues", "workloads")


@dataclass(frozen=True)
class KueueObjects:
    """Kueue's objects the hub watches, as values: replaced, never changed in place."""

    cluster_queues: Mapping[str, ClusterQueueInfo] = field(default_factory=dict)
    #: (namespace, name) -> ClusterQueue name (None: the LocalQueue names none)
    local_queues: Mapping[tuple[str, str], str | None] = field(default_factory=dict)
    workloads: Mapping[tuple[str, str], WorkloadState] = field(default_factory=dict)
    #: which of KINDS have been listed at least once (what is not listed is not known)
    listed: frozenset[str] = frozenset()

    def applied(self, kind: str, event_type: str, obj: Any) -> KueueObjects:
        """These objects after one watch event of ``kind`` (a garbled object: unchanged)."""
        deleted = event_type == "DELETED"
        if kind == "clusterqueues":
            cq = parse_cluster_queue(obj)
            if cq is None:
                return self
            cqs = dict(self.cluster_queues)
            if deleted:
                cqs.pop(cq.name, None)
            else:
                cqs[cq.name] = cq
            return replace(self, cluster_queues=cqs)
        if kind == "localqueues":
            lq = parse_local_queue(obj)
            if lq is None:
                return self
            lqs = dict(self.local_queues)
            if deleted:
                lqs.pop(lq[:2], None)
            else:
                lqs[lq[:2]] = lq[2]
            return replace(self, local_queues=lqs)
        if kind == "workloads":
            wl = parse_workload(obj)
            if wl is None:
                return self
            wls = dict(self.workloads)
            if deleted:
                wls.pop((wl.namespace, wl.name), None)
            else:
                wls[(wl.namespace, wl.name)] = wl
            return replace(self, workloads=wls)
        return self

    def replaced(self, kind: str, objs: Any) -> KueueObjects:
        """These objects with every one of ``kind`` replaced by a list's ``objs``."""
        cleared = {
            "clusterqueues": replace(self, cluster_queues={}),
            "localqueues": replace(self, local_queues={}),
            "workloads": replace(self, workloads={}),
        }.get(kind, self)
        for obj in objs or ():
            cleared = cleared.applied(kind, "ADDED", obj)
        return replace(cleared, listed=self.listed | {kind})

    def cluster_queue_of(self, namespace: str, local_queue: str) -> str | None:
        return self.local_queues.get((namespace, local_queue))

    def has_local_queue(self, namespace: str, local_queue: str) -> bool | None:
        """Whether it exists; None when LocalQueues were never listed."""
        if "localqueues" not in self.listed:
            return None
        return (namespace, local_queue) in self.local_queues

    def room(self, namespace: str, local_queue: str, resource: str) -> Room | None:
        cq = self.cluster_queue_of(namespace, local_queue)
        if cq is None:
            return None
        return room(self.cluster_queues, cq, resource, reserved_by(self.workloads.values()))

    def workload_of_pod(self, uid: str) -> WorkloadState | None:
        if not uid:
            return None
        return next((w for w in self.workloads.values() if uid in w.pod_uids), None)


@dataclass(frozen=True)
class KueueView:
    """What a decision reads in Kueue mode: the setting, the pods' namespace, the objects."""

    settings: KueueSettings
    namespace: str
    objects: KueueObjects

    def room_for(self, team: str | None, resource: str) -> Room | None:
        queue = self.settings.queue_for(team)
        return None if queue is None else self.objects.room(self.namespace, queue, resource)
