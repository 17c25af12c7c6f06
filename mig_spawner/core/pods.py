"""What a Pod holds: its GPU requests as the scheduler counts them, and who it is charged to.

Input is a Pod exactly as the API returns it (a dict). Every pod counts against the
capacity of the node it is bound to, whatever its namespace. Pods that mig-spawner
created carry labels naming the user and team (and the charge), so quota usage can be
rebuilt from the cluster alone after a hub restart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .catalog import MAX_COMPUTE_SLICES, WHOLE_GPU, parse_profile_name, profile_from_resource
from .nodes import parse_count

LABEL_PREFIX = "mig-spawner/"
TEAM_LABEL = LABEL_PREFIX + "team"
USER_LABEL = LABEL_PREFIX + "user"
TIER_LABEL = LABEL_PREFIX + "tier"
PROFILE_LABEL = LABEL_PREFIX + "profile"
CHARGE_SLICES_LABEL = LABEL_PREFIX + "charge-compute-slices"
CHARGE_MEMORY_LABEL = LABEL_PREFIX + "charge-memory-gb"
SERVER_NAME_ANNOTATION = "hub.jupyter.org/servername"
#: The profile the tier asked for (set by the spawner; differs from the granted one on a fallback).
REQUESTED_PROFILE_ANNOTATION = LABEL_PREFIX + "requested-profile"
TERMINAL_PHASES = ("Succeeded", "Failed")


_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def label_value(name: str) -> str:
    """``name`` as a valid Kubernetes label value, unchanged when it already is one.

    Otherwise the disallowed characters become '-' and an 8-hex hash of the original is
    appended, so distinct names stay distinct. Idempotent: label_value(label_value(x)) ==
    label_value(x), which lets the core compare pod labels with hub names directly.
    """
    if _LABEL_VALUE.match(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:50].strip("-_.")
    return f"{slug}-{digest}" if slug else digest


@dataclass(frozen=True)
class Charge:
    """What one server costs against a quota."""

    compute_slices: int
    memory_gb: float


@dataclass(frozen=True)
class PodInfo:
    key: str  # "namespace/name"
    node: str | None
    active: bool  # not Succeeded/Failed: it holds its resources
    requests: Mapping[str, int]  # nvidia.com/* extended resources, as the scheduler counts them
    user: str | None = None  # set on pods mig-spawner created
    team: str = ""  # "" = the user's default quota
    tier: str = ""
    profile: str = ""
    server_name: str = ""
    charge: Charge | None = None
    uid: str = ""  # metadata.uid: tells two pods of the same name apart
    requested_profile: str = ""  # what the tier asked for ("" if not a mig-spawner pod)

    @property
    def managed(self) -> bool:
        return self.user is not None


def _container_requests(container: Any) -> dict[str, int]:
    """Extended resources of one container: requests, defaulting to limits."""
    if not isinstance(container, Mapping):
        return {}
    res = container.get("resources")
    if not isinstance(res, Mapping):
        return {}
    out: dict[str, int] = {}
    for part in ("limits", "requests"):  # requests win over limits
        values = res.get(part)
        if isinstance(values, Mapping):
            for name, qty in values.items():
                if isinstance(name, str) and name.startswith("nvidia.com/"):
                    out[name] = parse_count(qty) or 0
    return out


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def effective_requests(spec: Mapping) -> dict[str, int]:
    """Per resource: max(sum of app containers + sidecars, peak of any init container).

    Restartable init containers (``restartPolicy: Always``, i.e. sidecars) run alongside
    everything after them, so they add to the sum, as kube-scheduler counts them.
    """
    sidecars: dict[str, int] = {}
    peak: dict[str, int] = {}
    for init in _list(spec.get("initContainers")):
        req = _container_requests(init)
        if isinstance(init, Mapping) and init.get("restartPolicy") == "Always":
            for k, v in req.items():
                sidecars[k] = sidecars.get(k, 0) + v
        else:
            for k, v in req.items():
                peak[k] = max(peak.get(k, 0), v + sidecars.get(k, 0))
    total = dict(sidecars)
    for container in _list(spec.get("containers")):
        for k, v in _container_requests(container).items():
            total[k] = total.get(k, 0) + v
    out = {k: max(total.get(k, 0), peak.get(k, 0)) for k in set(total) | set(peak)}
    return {k: v for k, v in out.items() if v > 0}


def charge_from_requests(requests: Mapping[str, int]) -> Charge:
    """Best effort for pods without charge labels: MIG resources by name, whole GPUs as 7g."""
    slices = 0
    memory = 0.0
    for resource, n in requests.items():
        profile = profile_from_resource(resource)
        if profile is not None:
            try:
                parsed = parse_profile_name(profile)
            except ValueError:
                continue
            slices += parsed.compute_slices * n
            memory += parsed.memory_gb * n
        else:
            slices += MAX_COMPUTE_SLICES * n
    return Charge(slices, memory)


def profile_from_requests(requests: Mapping[str, int]) -> str:
    """The MIG profile (or whole GPU) a pod asks for, for messages about unlabelled pods."""
    for resource in sorted(requests):
        profile = profile_from_resource(resource)
        if profile is not None:
            return profile
    return WHOLE_GPU if requests else ""


def _charge_labels(labels: Mapping[str, str]) -> Charge | None:
    slices = labels.get(CHARGE_SLICES_LABEL)
    memory = labels.get(CHARGE_MEMORY_LABEL)
    try:
        if slices is not None and memory is not None:
            return Charge(int(slices), float(memory))
    except ValueError:
        pass
    return None


def pod_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def parse_pod(obj: Any) -> PodInfo:
    """Turn a Pod object (dict) into a :class:`PodInfo`. Raises ValueError if it has no name."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
        raise ValueError("not a Pod: metadata.name is missing")
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else "default"
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    labels = meta.get("labels") if isinstance(meta.get("labels"), Mapping) else {}
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), Mapping) else {}
    node = spec.get("nodeName") if isinstance(spec.get("nodeName"), str) else None
    requests = effective_requests(spec)
    user = labels.get(USER_LABEL) if isinstance(labels.get(USER_LABEL), str) else None
    charge = None
    if user is not None:
        charge = _charge_labels(labels) or charge_from_requests(requests)
    return PodInfo(
        key=pod_key(namespace, meta["name"]),
        node=node or None,
        active=status.get("phase") not in TERMINAL_PHASES,
        requests=requests,
        user=user,
        team=str(labels.get(TEAM_LABEL) or ""),
        tier=str(labels.get(TIER_LABEL) or ""),
        profile=str(labels.get(PROFILE_LABEL) or profile_from_requests(requests)),
        server_name=str(annotations.get(SERVER_NAME_ANNOTATION) or ""),
        charge=charge,
        uid=meta["uid"] if isinstance(meta.get("uid"), str) else "",
        requested_profile=str(annotations.get(REQUESTED_PROFILE_ANNOTATION) or ""),
    )
