"""The controllers the emulated control plane needs besides the scheduler:

* node lifecycle: keeps the ``node.kubernetes.io/unschedulable`` and
  ``node.kubernetes.io/not-ready`` NoSchedule taints in step with ``spec.unschedulable`` and
  the Ready condition, as the real node lifecycle controller does;
* pod garbage collection: pods bound to a node that no longer exists are deleted at once;
* namespaces: a deleted namespace has its contents deleted (pods gracefully) and goes away
  once no pods are left.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .scheduler import NOT_READY_TAINT, UNSCHEDULABLE_TAINT, node_ready
from .store import KINDS, Change, Store

log = logging.getLogger(__name__)


def sync_node_taints(node: dict[str, Any]) -> None:
    """Edit ``node`` so its controller-managed taints match its spec and Ready condition."""
    spec = node.setdefault("spec", {})
    taints = [
        t
        for t in spec.get("taints") or []
        if t.get("key") not in (UNSCHEDULABLE_TAINT, NOT_READY_TAINT)
    ]
    old = {t.get("key"): t for t in spec.get("taints") or []}
    wanted = []
    if spec.get("unschedulable"):
        wanted.append(UNSCHEDULABLE_TAINT)
    if not node_ready(node):
        wanted.append(NOT_READY_TAINT)
    for key in wanted:
        taints.append(old.get(key) or {"key": key, "effect": "NoSchedule"})
    if taints:
        spec["taints"] = taints
    else:
        spec.pop("taints", None)


class Controllers:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        store.add_listener(self._on_change)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="emulated-controllers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _on_change(self, change: Change) -> None:
        meta = change.obj["metadata"]
        if change.plural == "nodes":
            self._queue.put_nowait(("node", meta["name"]))
        elif change.plural == "namespaces" and meta.get("deletionTimestamp"):
            self._queue.put_nowait(("namespace", meta["name"]))
        elif change.plural == "pods" and change.type == "DELETED":
            namespace = self.store.find("namespaces", None, meta.get("namespace", ""))
            if namespace is not None and namespace["metadata"].get("deletionTimestamp"):
                self._queue.put_nowait(("namespace", namespace["metadata"]["name"]))

    async def _run(self) -> None:
        while True:
            what, name = await self._queue.get()
            try:
                if what == "node":
                    self._sync_node(name)
                else:
                    self._sync_namespace(name)
            except Exception:
                log.exception("controller failed on %s %s", what, name)

    def _sync_node(self, name: str) -> None:
        if self.store.find("nodes", None, name) is not None:
            self.store.mutate("nodes", None, name, sync_node_taints)
            return
        for pod in self.store.list("pods"):
            if (pod.get("spec") or {}).get("nodeName") == name:
                self.store.remove(
                    "pods", pod["metadata"]["namespace"], pod["metadata"]["name"], force=True
                )

    def _sync_namespace(self, name: str) -> None:
        namespace = self.store.find("namespaces", None, name)
        if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
            return
        for plural, (_, namespaced) in KINDS.items():
            if not namespaced:
                continue
            for obj in self.store.list(plural, name):
                if not obj["metadata"].get("deletionTimestamp"):
                    self.store.delete(plural, name, obj["metadata"]["name"])
        if not self.store.list("pods", name):
            self.store.remove("namespaces", None, name)
