"""Events as the scheduler and kubelet record them (core/v1, with client-side aggregation).

Like client-go's event recorder, a repeat of the same event (same object, type, reason,
message and source) bumps ``count`` and ``lastTimestamp`` on the existing Event instead of
creating a new one.
"""

from __future__ import annotations

import time
from typing import Any

from .status import ApiError
from .store import Store, now


class EventRecorder:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._seen: dict[tuple, tuple[str, str]] = {}

    def record(
        self,
        obj: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        component: str,
        host: str | None = None,
        field_path: str | None = None,
    ) -> dict[str, Any] | None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        if self.store.find("namespaces", None, namespace) is None:
            return None
        key = (meta.get("uid"), type_, reason, message, component, host, field_path)
        if key in self._seen:
            ns, name = self._seen[key]

            def bump(event: dict[str, Any]) -> None:
                event["count"] = event.get("count", 1) + 1
                event["lastTimestamp"] = now()

            existing = self.store.mutate("events", ns, name, bump)
            if existing is not None:
                return existing
        involved = {
            "kind": obj.get("kind"),
            "namespace": meta.get("namespace"),
            "name": meta["name"],
            "uid": meta.get("uid"),
            "apiVersion": obj.get("apiVersion", "v1"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        if field_path:
            involved["fieldPath"] = field_path
        if involved["namespace"] is None:
            del involved["namespace"]
        source = {"component": component}
        if host:
            source["host"] = host
        event = {
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": source,
            "type": type_,
            "reportingComponent": component,
            "reportingInstance": host or "",
        }
        try:
            created = self.store.create("events", namespace, event)
        except ApiError:  # e.g. the namespace is being deleted
            return None
        self._seen[key] = (namespace, created["metadata"]["name"])
        return created
