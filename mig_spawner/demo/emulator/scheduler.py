"""A kube-scheduler for the emulated cluster.

It binds Pending, unbound pods to nodes, oldest first, with kube-scheduler's filters in
kube-scheduler's order, the first failing filter giving a node's reason:

1. NodeUnschedulable: ``spec.unschedulable`` (unless the pod tolerates the
   ``node.kubernetes.io/unschedulable`` taint) -> ``node(s) were unschedulable``;
2. TaintToleration: NoSchedule/NoExecute taints (a NotReady node counts as tainted
   ``node.kubernetes.io/not-ready``) -> ``node(s) had untolerated taint {key: value}``;
3. NodeAffinity: ``nodeSelector`` and required node affinity (In, NotIn, Exists,
   DoesNotExist, Gt, Lt; matchFields on metadata.name) -> ``node(s) didn't match Pod's node
   affinity/selector``;
4. NodeResourcesFit: requests (API defaulting copies limits into missing requests) of every
   non-terminal pod bound to the node, in any namespace, terminating ones included; a pod
   needs max(sum of containers + sidecars, largest init container) -> ``Insufficient <name>``
   per short resource, ``Too many pods``.

A pod that fits nowhere stays Pending with ``PodScheduled=False/Unschedulable`` and a Warning
``FailedScheduling`` event: ``0/3 nodes are available: 1 node(s) were unschedulable, 2
Insufficient nvidia.com/mig-1g.10gb.`` (reasons counted and sorted as kube-scheduler's FitError
does). It is retried when capacity may have changed (node added or changed, pod deleted or
finished) or its own spec changed. Among fitting nodes the least allocated (CPU and memory,
as the default LeastAllocated score) wins; ties go to the first name.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from fractions import Fraction
from typing import Any

from .events import EventRecorder
from .quantity import parse_quantity
from .store import Change, Store, now

log = logging.getLogger(__name__)

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
TERMINAL = ("Succeeded", "Failed")


def _requests(container: dict[str, Any]) -> Counter:
    resources = container.get("resources") or {}
    merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    result: Counter = Counter()
    for name, value in merged.items():
        try:
            result[name] = parse_quantity(value)
        except ValueError:
            continue
    return result


def pod_requests(pod: dict[str, Any]) -> Counter:
    """What the pod asks of a node: kube-scheduler's computePodResourceRequest."""
    spec = pod.get("spec") or {}
    total: Counter = Counter()
    for container in spec.get("containers") or []:
        total.update(_requests(container))
    sidecars: Counter = Counter()
    init_max: Counter = Counter()
    for container in spec.get("initContainers") or []:
        if container.get("restartPolicy") == "Always":
            sidecars.update(_requests(container))
            continue
        candidate = sidecars.copy()
        candidate.update(_requests(container))
        for name, value in candidate.items():
            init_max[name] = max(init_max[name], value)
    total.update(sidecars)
    for name, value in init_max.items():
        total[name] = max(total[name], value)
    for name, value in (spec.get("overhead") or {}).items():
        total[name] += parse_quantity(value)
    return total


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        if toleration.get("operator") == "Exists":
            if not toleration.get("key") or toleration["key"] == taint.get("key"):
                return True
        elif toleration.get("key") == taint.get("key") and (toleration.get("value") or "") == (
            taint.get("value") or ""
        ):
            return True
    return False


def node_ready(node: dict[str, Any]) -> bool:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def effective_taints(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The node's taints plus those the node lifecycle controller keeps in sync with
    ``spec.unschedulable`` and the Ready condition."""
    taints = list((node.get("spec") or {}).get("taints") or [])
    keys = {t.get("key") for t in taints}
    if (node.get("spec") or {}).get("unschedulable") and UNSCHEDULABLE_TAINT not in keys:
        taints.append({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"})
    if not node_ready(node) and NOT_READY_TAINT not in keys:
        taints.append({"key": NOT_READY_TAINT, "effect": "NoSchedule"})
    return taints


def _expression_matches(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    present, value = key in labels, labels.get(key)
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and values:
        try:
            number, bound = int(value), int(values[0])
        except (TypeError, ValueError):
            return False
        return number > bound if op == "Gt" else number < bound
    return False


def matches_node_affinity(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}
    for term in required.get("nodeSelectorTerms") or []:
        expressions = term.get("matchExpressions") or []
        field_expressions = term.get("matchFields") or []
        if not expressions and not field_expressions:
            continue
        if all(_expression_matches(e, labels) for e in expressions) and all(
            _expression_matches(e, fields) for e in field_expressions
        ):
            return True
    return False


def allocatable(node: dict[str, Any]) -> Counter:
    result: Counter = Counter()
    for name, value in ((node.get("status") or {}).get("allocatable") or {}).items():
        try:
            result[name] = parse_quantity(value)
        except ValueError:
            continue
    return result


class Scheduler:
    def __init__(
        self, store: Store, recorder: EventRecorder, name: str = "default-scheduler"
    ) -> None:
        self.store, self.recorder, self.name = store, recorder, name
        self._wake = asyncio.Event()
        self._generation = 0
        self._attempted: dict[str, tuple[int, str]] = {}
        self._task: asyncio.Task | None = None
        store.add_listener(self._on_change)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="emulated-scheduler")
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _on_change(self, change: Change) -> None:
        if change.plural == "nodes":
            self._generation += 1
            self._wake.set()
        elif change.plural == "pods":
            phase = (change.obj.get("status") or {}).get("phase")
            old_phase = ((change.old or {}).get("status") or {}).get("phase")
            if change.type == "DELETED" or (phase in TERMINAL and old_phase not in TERMINAL):
                self._attempted.pop(change.obj["metadata"].get("uid"), None)
                self._generation += 1
                self._wake.set()
            elif not (change.obj.get("spec") or {}).get("nodeName"):
                self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self.schedule_pending()
            except Exception:
                log.exception("scheduler pass failed")
            await asyncio.sleep(0)

    def schedule_pending(self) -> None:
        """One scheduling pass over every pending pod that is due an attempt."""
        pending = [
            p
            for p in self.store.list("pods")
            if not (p.get("spec") or {}).get("nodeName")
            and not p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("phase", "Pending") == "Pending"
            and not (p.get("spec") or {}).get("schedulingGates")
        ]
        if not pending:
            return
        pending.sort(
            key=lambda p: (
                p["metadata"]["creationTimestamp"],
                int(p["metadata"]["resourceVersion"]),
            )
        )
        nodes = self.store.list("nodes")
        used: dict[str, Counter] = {n["metadata"]["name"]: Counter() for n in nodes}
        for pod in self.store.list("pods"):
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name in used and (pod.get("status") or {}).get("phase") not in TERMINAL:
                used[node_name].update(pod_requests(pod))
                used[node_name]["pods"] += 1
        for pod in pending:
            uid = pod["metadata"]["uid"]
            fingerprint = json.dumps(pod.get("spec"), sort_keys=True)
            if self._attempted.get(uid) == (self._generation, fingerprint):
                continue
            self._attempted[uid] = (self._generation, fingerprint)
            self._schedule_one(pod, nodes, used)

    def _filter(self, pod: dict[str, Any], node: dict[str, Any], used: Counter) -> list[str]:
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        if (node.get("spec") or {}).get("unschedulable") and not tolerates(
            tolerations, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
        ):
            return ["node(s) were unschedulable"]
        for taint in effective_taints(node):
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(
                tolerations, taint
            ):
                key, value = taint.get("key"), taint.get("value", "")
                return [f"node(s) had untolerated taint {{{key}: {value}}}"]
        if not matches_node_affinity(pod, node):
            return ["node(s) didn't match Pod's node affinity/selector"]
        request = pod_requests(pod)
        capacity = allocatable(node)
        reasons = []
        if used["pods"] + 1 > capacity["pods"]:
            reasons.append("Too many pods")
        for name, amount in sorted(request.items()):
            if amount > 0 and used[name] + amount > capacity[name]:
                reasons.append(f"Insufficient {name}")
        return reasons

    def _schedule_one(
        self, pod: dict[str, Any], nodes: list[dict], used: dict[str, Counter]
    ) -> None:
        histogram: Counter = Counter()
        feasible = []
        for node in nodes:
            name = node["metadata"]["name"]
            reasons = self._filter(pod, node, used[name])
            if reasons:
                histogram.update(reasons)
            else:
                feasible.append(node)
        if not feasible:
            if not nodes:
                message = "no nodes available to schedule pods"
            else:
                parts = sorted(f"{count} {reason}" for reason, count in histogram.items())
                message = f"0/{len(nodes)} nodes are available: {', '.join(parts)}."
            self._unschedulable(pod, message)
            return
        request = pod_requests(pod)
        node = min(
            feasible,
            key=lambda n: (
                -self._score(n, used[n["metadata"]["name"]], request),
                n["metadata"]["name"],
            ),
        )
        name = node["metadata"]["name"]
        used[name].update(request)
        used[name]["pods"] += 1
        self._bind(pod, name)

    @staticmethod
    def _score(node: dict[str, Any], used: Counter, request: Counter) -> Fraction:
        capacity = allocatable(node)
        score = Fraction(0)
        for resource in ("cpu", "memory"):
            if capacity[resource] > 0:
                score += (capacity[resource] - used[resource] - request[resource]) / capacity[
                    resource
                ]
        return score

    def _set_condition(self, pod: dict[str, Any], condition: dict[str, Any]) -> None:
        conditions = pod.setdefault("status", {}).setdefault("conditions", [])
        for i, existing in enumerate(conditions):
            if existing.get("type") == condition["type"]:
                if existing.get("status") == condition["status"]:
                    condition["lastTransitionTime"] = existing.get("lastTransitionTime")
                conditions[i] = condition
                return
        conditions.append(condition)

    def _bind(self, pod: dict[str, Any], node_name: str) -> None:
        meta = pod["metadata"]

        def bind(current: dict[str, Any]) -> None:
            current["spec"]["nodeName"] = node_name
            self._set_condition(
                current,
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": now(),
                },
            )

        bound = self.store.mutate("pods", meta["namespace"], meta["name"], bind)
        if bound is not None:
            self.recorder.record(
                bound,
                "Normal",
                "Scheduled",
                f"Successfully assigned {meta['namespace']}/{meta['name']} to {node_name}",
                self.name,
                action="Binding",
            )

    def _unschedulable(self, pod: dict[str, Any], message: str) -> None:
        meta = pod["metadata"]

        def mark(current: dict[str, Any]) -> None:
            self._set_condition(
                current,
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": now(),
                    "reason": "Unschedulable",
                    "message": message,
                },
            )

        marked = self.store.mutate("pods", meta["namespace"], meta["name"], mark)
        if marked is not None:
            self.recorder.record(
                marked, "Warning", "FailedScheduling", message, self.name, action="Scheduling"
            )
