"""What a Pod holds: its GPU requests as the scheduler counts them, and who it is charged to.

Input is a Pod exactly as the API returns it (a dict). Every pod counts against the
capacity of the node it is bound to, whatever its namespace. Pods this hub created (in
its namespaces, with its mark: :class:`Trust`) carry annotations naming the exact user and
team and recording the granted and requested profiles, so quota usage can be rebuilt from
the cluster alone after a hub restart. A charge is always derived from what the pod
requests, through the catalog; no number written on a pod is ever believed.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .catalog import (
    MAX_COMPUTE_SLICES,
    WHOLE_GPU,
    Catalog,
    parse_profile_name,
    profile_from_resource,
)
from .nodes import parse_count

LABEL_PREFIX = "mig-spawner/"
#: Labels select pods (``kubectl get pods -l mig-spawner/team=vision``); they hold
#: label-safe *encodings* of names, never read back as identities or charges.
TEAM_LABEL = LABEL_PREFIX + "team"
USER_LABEL = LABEL_PREFIX + "user"
TIER_LABEL = LABEL_PREFIX + "tier"
PROFILE_LABEL = LABEL_PREFIX + "profile"
#: Annotations hold the hub's record, exact (an annotation value can be any string).
HUB_ANNOTATION = LABEL_PREFIX + "hub"  # the mark: which hub created the pod
USER_ANNOTATION = LABEL_PREFIX + "user"  # the exact JupyterHub user name
TEAM_ANNOTATION = LABEL_PREFIX + "team"  # the exact team ("" = the user's default quota)
TIER_ANNOTATION = LABEL_PREFIX + "tier"
NODE_ANNOTATION = LABEL_PREFIX + "node"  # the node the pod is pinned to
REQUESTED_ANNOTATION = LABEL_PREFIX + "requested-profile"  # differs from granted on a fallback
REQUESTED_PROFILE_ANNOTATION = REQUESTED_ANNOTATION
GRANTED_ANNOTATION = LABEL_PREFIX + "granted-profile"
PRODUCT_ANNOTATION = LABEL_PREFIX + "granted-product"
CHARGE_MODE_ANNOTATION = LABEL_PREFIX + "charge"
SERVER_NAME_ANNOTATION = "hub.jupyter.org/servername"
TERMINAL_PHASES = ("Succeeded", "Failed")
#: Kubernetes label values: at most 63 characters, alphanumeric at both ends.
LABEL_VALUE_MAX = 63

_LABEL_VALUE = re.compile(r"\A(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?\Z")


def is_label_value(value: str) -> bool:
    """Is ``value`` a valid Kubernetes label value (full match: no trailing newline)?"""
    return isinstance(value, str) and _LABEL_VALUE.fullmatch(value) is not None


def label_value(name: str) -> str:
    """``name`` as a valid Kubernetes label value, unchanged when it already is one.

    For *selecting* pods only: it is not injective (a user literally named like another
    user's encoded name maps to the same value), so nothing is ever identified by it --
    identities live, exact, in annotations (:data:`USER_ANNOTATION`, :data:`TEAM_ANNOTATION`).
    Otherwise the disallowed characters become '-' and an 8-hex hash of the original is
    appended. Idempotent: label_value(label_value(x)) == label_value(x).
    """
    if is_label_value(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:50].strip("-_.")
    return f"{slug}-{digest}" if slug else digest


@dataclass(frozen=True)
class Trust:
    """Which pods count toward quotas: the ones this hub created.

    A pod is the hub's when it is in one of the hub's ``namespaces`` and carries the hub's
    mark (:data:`HUB_ANNOTATION` = ``hub``). ``None`` accepts any namespace / any hub's mark
    (``mig-spawner explain`` on a snapshot). Every other pod still holds the slices it
    requests (it counts against capacity), but never against, or for, a quota.
    """

    namespaces: frozenset[str] | None = None
    hub: str | None = None

    def trusts(self, namespace: str, annotations: Mapping[str, Any]) -> bool:
        mark = annotations.get(HUB_ANNOTATION)
        if not isinstance(mark, str) or not isinstance(annotations.get(USER_ANNOTATION), str):
            return False
        if self.hub is not None and mark != self.hub:
            return False
        return self.namespaces is None or namespace in self.namespaces


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
    user: str | None = None  # exact user name; set only on pods this hub created (Trust)
    team: str = ""  # exact team; "" = the user's default quota
    tier: str = ""
    profile: str = ""
    server_name: str = ""
    charge: Charge | None = None
    uid: str = ""  # metadata.uid: tells two pods of the same name apart
    requested_profile: str = ""  # what the tier asked for ("" if not a mig-spawner pod)
    pinned: str | None = None  # the node the hub pinned it to (required node affinity)
    #: metadata.creationTimestamp as the API wrote it (RFC 3339): the waiting line's ETA
    #: reads running servers' ages from it
    created: str = field(default="", compare=False)

    @property
    def managed(self) -> bool:
        return self.user is not None

    @property
    def slot(self) -> str | None:
        """The node whose slices it holds: where it is bound, else where the hub pinned it.

        A created-but-unbound pod of ours can only ever land on its pinned node, so it holds
        that slice from the moment it is seen -- also after a hub restart, when no
        reservation remembers it.
        """
        if not self.active:
            return None
        return self.node or self.pinned


def unix_seconds(stamp: Any) -> float | None:
    """An RFC 3339 time as the API and JupyterHub write it ("2026-12-07T10:00:00Z"), in
    Unix seconds; a stamp without a zone is UTC; None for anything unreadable."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    seconds = when.timestamp()
    return seconds if math.isfinite(seconds) else None


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


@functools.lru_cache(maxsize=8)  # scanning the catalog on every pod event cost 3/4 of one
def _catalog_max_memory_gb(catalog: Catalog) -> int:
    return max((p.memory_gb for m in catalog for p in m.profiles), default=0)


def profile_charge(profile: Any, product: Any, catalog: Catalog) -> Charge | None:
    """The charge of one slice of ``profile`` (a MIG profile or WHOLE_GPU), from the catalog.

    ``None`` unless the name is a valid profile within the catalog's bounds (1-7 compute
    slices, no more memory than the largest GPU the catalog knows). A whole GPU is 7 slices
    and the memory of its model (``product``), or of the largest model when unknown.
    """
    if not isinstance(profile, str):
        return None
    ceiling = _catalog_max_memory_gb(catalog)
    if profile == WHOLE_GPU:
        model = catalog.model_for_product(product if isinstance(product, str) else "")
        memory = max((p.memory_gb for p in model.profiles), default=0) if model else 0
        if not memory and model and model.memory_mib:
            memory = round(model.memory_mib / 1024)
        return Charge(MAX_COMPUTE_SLICES, memory or ceiling)
    try:
        parsed = parse_profile_name(profile)
    except ValueError:
        return None
    if parsed.memory_gb > ceiling:
        return None
    return Charge(parsed.compute_slices, parsed.memory_gb)


def charge_from_requests(
    requests: Mapping[str, int], granted_profile: Any, product: Any, catalog: Catalog
) -> Charge:
    """What a pod's GPU requests are worth, through the catalog -- never a number it carries.

    A mixed-strategy resource names its profile. ``nvidia.com/gpu`` is one single-strategy
    slice of ``granted_profile`` when that is a valid MIG profile (the hub records it), else
    a whole GPU (7 slices): a missing or garbled record costs more, never less.
    """
    slices = 0
    memory = 0.0
    for resource, n in requests.items():
        one = profile_charge(profile_from_resource(resource) or "", "", catalog)
        if one is None:  # nvidia.com/gpu (or an unknown nvidia.com/* resource)
            single = granted_profile if granted_profile != WHOLE_GPU else None
            one = profile_charge(single, "", catalog) or profile_charge(WHOLE_GPU, product, catalog)
        slices += one.compute_slices * n
        memory += one.memory_gb * n
    return Charge(slices, memory)


def profile_from_requests(requests: Mapping[str, int]) -> str:
    """The MIG profile (or whole GPU) a pod asks for, for messages about unlabelled pods."""
    for resource in sorted(requests):
        profile = profile_from_resource(resource)
        if profile is not None:
            return profile
    return WHOLE_GPU if requests else ""


def pod_charge(
    requests: Mapping[str, int], annotations: Mapping[str, Any], catalog: Catalog
) -> Charge:
    """The quota charge of one of the hub's pods.

    ``charge = "granted"``: what the pod really requests (:func:`charge_from_requests`).
    ``"requested"``: the profile the hub recorded as asked for, if it is a valid catalog
    profile no larger than what the pod holds; otherwise the granted charge.
    """
    granted = charge_from_requests(
        requests,
        annotations.get(GRANTED_ANNOTATION),
        annotations.get(PRODUCT_ANNOTATION),
        catalog,
    )
    if annotations.get(CHARGE_MODE_ANNOTATION) == "requested":
        asked = profile_charge(
            annotations.get(REQUESTED_ANNOTATION), annotations.get(PRODUCT_ANNOTATION), catalog
        )
        if (
            asked is not None
            and asked.compute_slices <= granted.compute_slices
            and asked.memory_gb <= granted.memory_gb
        ):
            return asked
    return granted


def pod_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_pod(obj: Any, trust: Trust | None, catalog: Catalog) -> PodInfo:
    """Turn a Pod object (dict) into a :class:`PodInfo`. Raises ValueError if it has no name.

    Identity, team and charge are read only from pods ``trust`` accepts as the hub's own;
    a charge is worked out through ``catalog``, never read off the pod.
    """
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
        raise ValueError("not a Pod: metadata.name is missing")
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else "default"
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), Mapping) else {}
    node = spec.get("nodeName") if isinstance(spec.get("nodeName"), str) else None
    requests = effective_requests(spec)
    fields: dict[str, Any] = {}
    if (trust or Trust()).trusts(namespace, annotations):
        fields = dict(
            user=annotations[USER_ANNOTATION],
            team=_text(annotations.get(TEAM_ANNOTATION)),
            tier=_text(annotations.get(TIER_ANNOTATION)),
            charge=pod_charge(requests, annotations, catalog),
            pinned=_text(annotations.get(NODE_ANNOTATION)) or None,
        )
    granted = _text(annotations.get(GRANTED_ANNOTATION)) if fields else ""
    return PodInfo(
        key=pod_key(namespace, meta["name"]),
        node=node or None,
        active=status.get("phase") not in TERMINAL_PHASES,
        requests=requests,
        profile=granted or profile_from_requests(requests),
        server_name=_text(annotations.get(SERVER_NAME_ANNOTATION)),
        uid=meta["uid"] if isinstance(meta.get("uid"), str) else "",
        requested_profile=_text(annotations.get(REQUESTED_ANNOTATION)),
        created=_text(meta.get("creationTimestamp")),
        **fields,
    )


def hub_marks(
    *,
    hub: str,
    user: str,
    team: str,
    tier: str,
    requested_profile: str,
    granted_profile: str,
    granted_product: str,
    charge_mode: str,
    node: str,
) -> tuple[dict[str, str], dict[str, str]]:
    """The labels and annotations the hub puts on a pod it creates, as :func:`parse_pod` reads them.

    Labels (label-safe encodings, for selection) and annotations (the exact record). The
    one place both sides agree on: the spawner writes these, tests build pods with them.
    """
    labels = {
        TEAM_LABEL: label_value(team),
        USER_LABEL: label_value(user),
        TIER_LABEL: label_value(tier),
        PROFILE_LABEL: label_value(granted_profile),
    }
    annotations = {
        HUB_ANNOTATION: hub,
        USER_ANNOTATION: user,
        TEAM_ANNOTATION: team,
        TIER_ANNOTATION: tier,
        NODE_ANNOTATION: node,
        REQUESTED_ANNOTATION: requested_profile,
        GRANTED_ANNOTATION: granted_profile,
        PRODUCT_ANNOTATION: granted_product,
        CHARGE_MODE_ANNOTATION: charge_mode,
    }
    return labels, annotations
