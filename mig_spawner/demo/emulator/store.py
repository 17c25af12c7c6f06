"""The object store: etcd plus the API server's registry logic.

Objects are plain dicts in the JSON shape the API returns. A stored dict is never mutated in
place: every change stores a new dict, so watch history and callers holding an old object
see a consistent snapshot. One global counter gives every change its ``resourceVersion``.
Each kind keeps a bounded history of changes, from which watches started at a
``resourceVersion`` are replayed; a watch from before the history is answered ``410``.

Unlike a real API server, by default creating an object in a namespace that does not exist
creates the namespace (``auto_namespaces``); with ``auto_namespaces=False`` it is a 404.

Internal components (scheduler, kubelet, controllers) change objects with :meth:`Store.mutate`
and hear about every change through :meth:`Store.add_listener` (called synchronously; they
must only queue work, never change the store from inside the callback).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import logging
import random
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import validation
from .selectors import Selector
from .status import ApiError, already_exists, conflict, invalid, not_found

log = logging.getLogger(__name__)

#: plural -> (kind, namespaced). Pods, nodes, events and namespaces have behaviour; the rest are
#: stored so that KubeSpawner options that create them (services, PVCs, secrets) work.
KINDS: dict[str, tuple[str, bool]] = {
    "pods": ("Pod", True),
    "nodes": ("Node", False),
    "events": ("Event", True),
    "namespaces": ("Namespace", False),
    "services": ("Service", True),
    "persistentvolumeclaims": ("PersistentVolumeClaim", True),
    "secrets": ("Secret", True),
    "configmaps": ("ConfigMap", True),
    "serviceaccounts": ("ServiceAccount", True),
}
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    """An RFC 3339 timestamp with second resolution (``metav1.Time``)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """An RFC 3339 timestamp with microseconds (``metav1.MicroTime``)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def later(seconds: float) -> str:
    moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Change:
    """One committed change: ``type`` is ADDED, MODIFIED or DELETED."""

    rv: int
    plural: str
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None
    _lines: dict[str, bytes] = field(default_factory=dict, repr=False)

    def line(self, event_type: str) -> bytes:
        """The watch-stream line for this change as ``event_type`` (serialized once)."""
        if event_type not in self._lines:
            self._lines[event_type] = (
                json.dumps({"type": event_type, "object": self.obj}, separators=(",", ":")) + "\n"
            ).encode()
        return self._lines[event_type]


CLOSE = "close"
ABORT = "abort"


class Watcher:
    """One open watch: a queue of encoded event lines (or CLOSE/ABORT) for its HTTP stream."""

    def __init__(self, plural: str, namespace: str | None, selector: Selector) -> None:
        self.plural, self.namespace, self.selector = plural, namespace, selector
        self.queue: asyncio.Queue[bytes | str] = asyncio.Queue()

    def _matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.selector.matches(obj)

    def offer(self, change: Change) -> None:
        if change.plural != self.plural:
            return
        if change.type == "DELETED":
            event = "DELETED" if self._matches(change.obj) else None
        else:
            was, now_ = self._matches(change.old), self._matches(change.obj)
            event = ("MODIFIED" if was else "ADDED") if now_ else ("DELETED" if was else None)
        if event == "DELETED" and change.type != "DELETED":
            # It left the selector: like the API server's watch cache, send the object as
            # it was (the state that matched), with the resourceVersion of this change.
            assert change.old is not None
            left = {**change.old, "metadata": dict(change.old["metadata"])}
            left["metadata"]["resourceVersion"] = change.obj["metadata"]["resourceVersion"]
            line = json.dumps({"type": "DELETED", "object": left}, separators=(",", ":"))
            self.queue.put_nowait((line + "\n").encode())
        elif event:
            self.queue.put_nowait(change.line(event))

    def close(self, how: str = CLOSE) -> None:
        self.queue.put_nowait(how)


class Store:
    def __init__(self, history_size: int = 1000, auto_namespaces: bool = True) -> None:
        self.rv = 0
        self.auto_namespaces = auto_namespaces
        self.history_size = history_size
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {p: {} for p in KINDS}
        self.history: dict[str, deque[Change]] = {p: deque() for p in KINDS}
        self.compacted: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.watchers: set[Watcher] = set()
        self.listeners: list[Callable[[Change], None]] = []

    # -- reading ---------------------------------------------------------------------------
    def get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.objects[plural].get((namespace or "", name))
        if obj is None:
            raise not_found(plural, name)
        return obj

    def find(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects[plural].get((namespace or "", name))

    def list(
        self, plural: str, namespace: str | None = None, selector: Selector | None = None
    ) -> list[dict[str, Any]]:
        items = [
            obj
            for (ns, _), obj in sorted(self.objects[plural].items())
            if (namespace is None or ns == namespace)
            and (selector is None or selector.matches(obj))
        ]
        return items

    # -- committing ------------------------------------------------------------------------
    def add_listener(self, listener: Callable[[Change], None]) -> None:
        self.listeners.append(listener)

    def _commit(self, plural: str, event: str, old: dict | None, new: dict) -> dict[str, Any]:
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        key = (new["metadata"].get("namespace", ""), new["metadata"]["name"])
        if event == "DELETED":
            self.objects[plural].pop(key, None)
        else:
            self.objects[plural][key] = new
        change = Change(self.rv, plural, event, new, old)
        history = self.history[plural]
        history.append(change)
        while len(history) > self.history_size:
            self.compacted[plural] = history.popleft().rv
        for watcher in list(self.watchers):
            watcher.offer(change)
        for listener in list(self.listeners):
            try:
                listener(change)
            except Exception:  # a broken component must not break the API server
                log.exception("store listener %r failed", listener)
        return new

    def compact(self) -> None:
        """Drop all history, so that any watch from an older resourceVersion gets 410."""
        for history in self.history.values():
            history.clear()
        self.compacted = dict.fromkeys(KINDS, self.rv)

    # -- writing ---------------------------------------------------------------------------
    def create(self, plural: str, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        kind, namespaced = KINDS[plural]
        obj = copy.deepcopy(body)
        if not isinstance(obj, dict):
            raise ApiError(400, f"the body of the request must be a {kind} object")
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if obj.get("kind") not in (None, kind):
            raise ApiError(400, f"the API version in the data (v1) does not match the kind {kind}")
        obj["kind"], obj["apiVersion"] = kind, "v1"
        if namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the namespace "
                    "sent on the request",
                )
            meta["namespace"] = namespace
            ns = self.find("namespaces", None, namespace or "")
            if ns is None and self.auto_namespaces and namespace:
                ns = self.create("namespaces", None, {"metadata": {"name": namespace}})
            if ns is None:
                raise not_found("namespaces", namespace or "")
            if ns["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    f'{plural} "{meta.get("name", "")}" is forbidden: unable to create new '
                    f"content in namespace {namespace} because it is being terminated",
                )
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(
                    kind,
                    "",
                    [("metadata.name", "Required value: name or generateName is required")],
                )
            for _ in range(10):
                name = meta["generateName"] + "".join(random.choices(_GENERATE_CHARS, k=5))
                if (meta.get("namespace", ""), name) not in self.objects[plural]:
                    break
            meta["name"] = name
        validation.validate_metadata(obj, kind)
        if plural == "configmaps":
            validation.validate_configmap(obj)
        if (meta.get("namespace", ""), meta["name"]) in self.objects[plural]:
            raise already_exists(plural, meta["name"])
        for server_field in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            meta.pop(server_field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        _DEFAULTERS.get(plural, lambda o: None)(obj)
        return self._commit(plural, "ADDED", None, obj)

    def replace(
        self,
        plural: str,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """PUT semantics (PATCH computes ``body`` first): optimistic concurrency on a given
        ``metadata.resourceVersion``, server-owned metadata kept, and the main resource
        ignoring ``status`` while the ``status`` subresource changes nothing else."""
        kind, _ = KINDS[plural]
        old = self.get(plural, namespace, name)
        new = copy.deepcopy(body)
        if not isinstance(new, dict):
            raise ApiError(400, f"the body of the request must be a {kind} object")
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        if meta.get("name") not in (None, name):
            raise ApiError(400, "the name of the object does not match the name on the URL")
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise conflict(plural, name)
        if subresource == "status":
            new = {**copy.deepcopy(old), "status": new.get("status", old.get("status"))}
        else:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            old_meta = old["metadata"]
            for key in (
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generateName",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            new["kind"], new["apiVersion"] = kind, "v1"
            validation.validate_metadata(new, kind)
            if plural == "pods":
                validation.validate_pod_update(old, new)
            if plural == "configmaps":
                validation.validate_configmap(new)
        meta = new["metadata"]
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return old
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            finished = (new.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            if plural != "pods" or finished:
                return self._commit(plural, "DELETED", old, new)
        return self._commit(plural, "MODIFIED", old, new)

    def mutate(
        self, plural: str, namespace: str | None, name: str, change: Callable[[dict], Any]
    ) -> dict[str, Any] | None:
        """Internal update: ``change`` edits a copy in place; committed only if it differs.
        Returns the current object, or ``None`` if it does not exist."""
        old = self.find(plural, namespace, name)
        if old is None:
            return None
        new = copy.deepcopy(old)
        change(new)
        if new == old:
            return old
        return self._commit(plural, "MODIFIED", old, new)

    def delete(
        self, plural: str, namespace: str | None, name: str, grace: int | None = None
    ) -> dict[str, Any]:
        """Delete as the API server does. Pods that are bound to a node and not yet terminal
        are deleted gracefully: ``deletionTimestamp`` is set and the kubelet finishes the job
        with :meth:`remove`; ``grace=0`` (or an unbound or finished pod) goes at once."""
        obj = self.get(plural, namespace, name)
        meta = obj["metadata"]
        if plural == "pods":
            spec, phase = obj.get("spec") or {}, (obj.get("status") or {}).get("phase")
            if grace is None:
                grace = int(spec.get("terminationGracePeriodSeconds", 30))
            if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
                grace = 0
            current = meta.get("deletionGracePeriodSeconds")
            if grace > 0 and (current is None or grace < current):

                def start_deleting(pod: dict[str, Any]) -> None:
                    pod["metadata"]["deletionTimestamp"] = later(grace)
                    pod["metadata"]["deletionGracePeriodSeconds"] = grace

                return self.mutate(plural, namespace, name, start_deleting) or obj
            if grace > 0:
                return obj
            return self.remove(plural, namespace, name, force=True) or obj
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return obj
            stamp = {"deletionTimestamp": now(), "deletionGracePeriodSeconds": 0}
            return (
                self.mutate(plural, namespace, name, lambda o: o["metadata"].update(stamp)) or obj
            )
        if plural == "namespaces":

            def terminate(ns: dict[str, Any]) -> None:
                ns["metadata"].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0)
                ns.setdefault("status", {})["phase"] = "Terminating"

            return self.mutate(plural, namespace, name, terminate) or obj
        return self.remove(plural, namespace, name, force=True) or obj

    def remove(
        self, plural: str, namespace: str | None, name: str, force: bool = False
    ) -> dict[str, Any] | None:
        """Remove an object for good (DELETED event), unless finalizers still hold it."""
        old = self.find(plural, namespace, name)
        if old is None:
            return None
        new = copy.deepcopy(old)
        if new["metadata"].get("finalizers"):
            if not new["metadata"].get("deletionTimestamp"):
                new["metadata"]["deletionTimestamp"] = now()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                return self._commit(plural, "MODIFIED", old, new)
            return old
        if force and plural == "pods":
            new["metadata"].setdefault("deletionTimestamp", now())
            new["metadata"]["deletionGracePeriodSeconds"] = 0
        return self._commit(plural, "DELETED", old, new)

    # -- watching --------------------------------------------------------------------------
    def watch(
        self,
        plural: str,
        namespace: str | None,
        selector: Selector,
        resource_version: str | None,
    ) -> Watcher:
        """Open a watch. Without a resourceVersion (or with "0") it starts with ADDED for every
        current match; otherwise it replays the history after that version. Raises a 410
        :class:`ApiError` (reason Expired) when that version is older than the history."""
        watcher = Watcher(plural, namespace, selector)
        if resource_version in (None, "", "0"):
            for obj in self.list(plural, namespace, selector):
                line = json.dumps({"type": "ADDED", "object": obj}, separators=(",", ":")) + "\n"
                watcher.queue.put_nowait(line.encode())
        else:
            try:
                since = int(resource_version)
            except ValueError:
                raise ApiError(400, f'invalid resource version "{resource_version}"') from None
            if since < self.compacted[plural]:
                raise ApiError(
                    410,
                    f"too old resource version: {since} ({self.compacted[plural] + 1})",
                    reason="Expired",
                )
            for change in self.history[plural]:
                if change.rv > since:
                    watcher.offer(change)
        self.watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)


def _default_event(event: dict[str, Any]) -> None:
    stamp = now()
    event.setdefault("count", 1)
    event.setdefault("type", "Normal")
    event.setdefault("eventTime", None)
    event.setdefault("reportingComponent", "")
    event.setdefault("reportingInstance", "")
    event.setdefault("source", {})
    event.setdefault("involvedObject", {})
    if not event.get("eventTime"):
        event.setdefault("firstTimestamp", stamp)
        event.setdefault("lastTimestamp", event["firstTimestamp"])
    else:
        event.setdefault("firstTimestamp", None)
        event.setdefault("lastTimestamp", None)


def _default_namespace(namespace: dict[str, Any]) -> None:
    name = namespace["metadata"]["name"]
    namespace["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    namespace["spec"] = {"finalizers": ["kubernetes"]}
    namespace["status"] = {"phase": "Active"}


def _default_pod(pod: dict[str, Any]) -> None:
    validation.validate_pod(pod)
    validation.default_pod(pod)


def _default_node(node: dict[str, Any]) -> None:
    node.setdefault("spec", {})
    node.setdefault("status", {})


_DEFAULTERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "pods": _default_pod,
    "events": _default_event,
    "namespaces": _default_namespace,
    "nodes": _default_node,
}
