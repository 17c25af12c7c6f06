"""Events as the scheduler and kubelet record them (core/v1, with client-side aggregation).

Like client-go's event recorder, a repeat of the same event (same object, type, reason,
message and source) bumps ``count`` and ``lastTimestamp`` on the existing Event instead of
creating a new one.

With ``action`` set, an event is recorded as client-go's newer ``events.k8s.io/v1``
recorder writes it, which is what kube-scheduler 1.37 uses (Scheduled, FailedScheduling):
seen through core/v1 it has ``eventTime``, ``action``, ``reportingComponent`` and
``reportingInstance``, an empty ``source`` and no ``firstTimestamp``/``lastTimestamp``/
``count``; a repeat becomes a ``series`` (count, lastObservedTime). Our kubelet records the
old way, like the real kubelet.
"""

from __future__ import annotations

import time
from typing import Any

from .status import ApiError
from .store import Store, now, now_micro


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
        action: str | None = None,
    ) -> dict[str, Any] | None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        if self.store.find("namespaces", None, namespace) is None:
            return None
        key = (meta.get("uid"), type_, reason, message, component, host, field_path)
        if key in self._seen:
            ns, name = self._seen[key]

            def bump(event: dict[str, Any]) -> None:
                if action:
                    series = event.get("series") or {"count": 1}
                    event["series"] = {
                        "count": series["count"] + 1,
                        "lastObservedTime": now_micro(),
                    }
                    return
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
        if action:  # the events.k8s.io/v1 recorder
            event.update(
                source={},
                action=action,
                eventTime=now_micro(),
                reportingInstance=f"{component}-{host or 'emulator'}",
                firstTimestamp=None,
                lastTimestamp=None,
                count=None,
            )
        try:
            created = self.store.create("events", namespace, event)
        except ApiError:  # e.g. the namespace is being deleted
            return None
        self._seen[key] = (namespace, created["metadata"]["name"])
        return created
