"""Pod status as a kubelet reports it: phase, IPs, container statuses and conditions.

Each function edits a pod dict in place (they are used inside :meth:`Store.mutate`).
"""

from __future__ import annotations

from typing import Any

from .store import now

FAKE_DIGEST = "sha256:" + "0" * 64


def set_conditions(pod: dict[str, Any], wanted: dict[str, str], reason: str | None = None) -> None:
    """Set condition statuses; ``lastTransitionTime`` changes only when a status does."""
    conditions = pod.setdefault("status", {}).setdefault("conditions", [])
    by_type = {c["type"]: c for c in conditions}
    for type_, value in wanted.items():
        current = by_type.get(type_)
        if current is not None and current.get("status") == value:
            continue
        condition = {
            "type": type_,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": now(),
        }
        if reason and value == "False":
            condition["reason"] = reason
        if current is None:
            conditions.append(condition)
        else:
            conditions[conditions.index(current)] = condition


def set_started(
    pod: dict[str, Any],
    *,
    running: bool,
    pod_ip: str | None,
    host_ip: str,
    container_id: str,
    restarts: int,
) -> None:
    """The pod's containers are running (``running``) or still being created."""
    stamp = now()
    status = pod.setdefault("status", {})
    status.update(
        phase="Running" if running else "Pending", hostIP=host_ip, hostIPs=[{"ip": host_ip}]
    )
    status.setdefault("startTime", stamp)
    if pod_ip:
        status.update(podIP=pod_ip, podIPs=[{"ip": pod_ip}])
    spec = pod["spec"]
    old = {c["name"]: c for c in status.get("containerStatuses") or []}
    statuses = []
    for container in spec["containers"]:
        previous = old.get(container["name"], {})
        state = (
            {"running": {"startedAt": stamp}}
            if running
            else {"waiting": {"reason": "ContainerCreating"}}
        )
        last_state = previous.get("lastState") or {}
        if (previous.get("state") or {}).get("terminated"):
            last_state = {"terminated": previous["state"]["terminated"]}
        statuses.append(
            {
                "name": container["name"],
                "image": container.get("image", ""),
                "imageID": f"{container.get('image', '')}@{FAKE_DIGEST}",
                "containerID": container_id,
                "ready": running,
                "started": running,
                "restartCount": restarts,
                "state": state,
                "lastState": last_state,
            }
        )
    status["containerStatuses"] = statuses
    if spec.get("initContainers"):
        status["initContainerStatuses"] = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": f"{c.get('image', '')}@{FAKE_DIGEST}",
                "containerID": container_id,
                "ready": True,
                "started": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": stamp,
                        "finishedAt": stamp,
                    }
                },
                "lastState": {},
            }
            for c in spec["initContainers"]
        ]
    ready = "True" if running else "False"
    set_conditions(
        pod,
        {
            "PodReadyToStartContainers": "True",
            "Initialized": "True",
            "Ready": ready,
            "ContainersReady": ready,
        },
        reason="ContainersNotReady",
    )


def set_terminated(pod: dict[str, Any], code: int, final: bool) -> None:
    """The containers exited with ``code``; ``final``: the pod is finished (phase
    Succeeded/Failed), else the container will be restarted."""
    finished = now()
    status = pod.setdefault("status", {})
    for entry in status.get("containerStatuses") or []:
        started = ((entry.get("state") or {}).get("running") or {}).get("startedAt", finished)
        entry["state"] = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started,
                "finishedAt": finished,
                "containerID": entry.get("containerID"),
            }
        }
        entry["ready"] = entry["started"] = False
    if final:
        status["phase"] = "Succeeded" if code == 0 else "Failed"
    set_conditions(
        pod,
        {"Ready": "False", "ContainersReady": "False"},
        reason="PodCompleted" if final else "ContainersNotReady",
    )
