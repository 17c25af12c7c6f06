"""The DRA backend's objects: a tier's chain as a ResourceClaim, and what the API says back.

With ``backend = "dra"`` a GPU spawn does not request an extended resource: its pod
references a ResourceClaim (``resource.k8s.io/v1``) made here, one per spawn and named
after the pod, whose single request lists one ``firstAvailable`` subrequest per step of
the tier's fallback chain. The scheduler allocates the first step with a free device,
atomically with the pod's placement, so no other scheduler can take the slice between
the hub's decision and the pod's binding.

Devices are those NVIDIA's DRA driver (``gpu.nvidia.com``, kubernetes-sigs/
dra-driver-nvidia-gpu) publishes in ResourceSlices: a MIG device has the attributes
``type`` ("mig"), ``profile`` ("1g.10gb"), ``productName`` (as NVML names the GPU, "NVIDIA
H100 80GB HBM3"), ``uuid`` and ``parentUUID``, and the capacity ``memory`` (bytes); the
driver's DeviceClass for them is ``mig.nvidia.com``.

The hub's cache (:class:`~.cluster.ClusterState`) is kept as for the device plugin: this
module rewrites the watched objects into the shape it reads. A Node's ``nvidia.com/mig-*``
capacity becomes the count of MIG devices its ResourceSlices publish
(:func:`node_with_devices`); a Pod's claims, once allocated, become the extended resource
of the slice each allocated device is, and for the hub's own pods the granted profile
(:func:`pod_with_claims`): so availability, quotas and a restarted hub's usage all come
from ResourceSlices and allocated claims.

Pure: standard library only; garbled objects give "not known" (None, empty), never raise.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DRIVER = "gpu.nvidia.com"
DEVICE_CLASS = "mig.nvidia.com"
API_VERSION = "resource.k8s.io/v1"
#: the claim's one request, and the name the pod gives the claim
REQUEST = "gpu"
#: the API's limit on a request's ``firstAvailable`` subrequests
MAX_STEPS = 8
#: the attributes a selector reads: without them no device can match
NEEDED_ATTRIBUTES = ("type", "profile")
MIG_PREFIX = "nvidia.com/mig-"
GRANTED_ANNOTATION = "mig-spawner/granted-profile"
_NAME_LIMIT = 253
_GROUP = "resource.k8s.io"
#: the API calls the DRA backend adds to the watcher's (hub/watch.py's CLUSTER_API_CALLS)
DRA_API_CALLS: tuple[tuple[str, str, str], ...] = (
    (_GROUP, "resourceslices", "list"),
    (_GROUP, "resourceslices", "watch"),
    (_GROUP, "resourceclaims", "list"),
    (_GROUP, "resourceclaims", "watch"),
    (_GROUP, "resourceclaims", "get"),
    (_GROUP, "resourceclaims", "create"),
    (_GROUP, "resourceclaims", "patch"),
    (_GROUP, "resourceclaims", "delete"),
    (_GROUP, "deviceclasses", "get"),
)


@dataclass(frozen=True)
class Step:
    """One step of a tier's chain: a MIG profile, on these GPU products (GFD labels)."""

    profile: str
    products: tuple[str, ...] = ()


@dataclass(frozen=True)
class Allocation:
    """What the scheduler allocated to a claim: which step, which device, on which node."""

    step: int
    subrequest: str
    device: str
    pool: str
    driver: str
    node: str | None


def product_name(label: str) -> str:
    """GFD's product label ("NVIDIA-H100-80GB-HBM3") as NVML, and so the driver, names it."""
    return label.replace("-", " ")


def step_name(index: int, profile: str) -> str:
    """A subrequest's name (a DNS label): ``s1-2g-20gb``."""
    return re.sub(r"[^a-z0-9-]", "-", f"s{index}-{profile.lower()}")[:63].rstrip("-")


def claim_name(pod_name: str) -> str:
    """The claim of the pod ``pod_name``: one per spawn, found by name."""
    return f"{pod_name[: _NAME_LIMIT - 4]}-gpu"


def selector(step: Step, driver: str = DRIVER) -> str:
    """The CEL expression selecting the devices of ``step``."""
    attrs = f"device.attributes['{driver}']"
    cel = f"device.driver == '{driver}' && {attrs}.profile == '{step.profile}'"
    if step.products:
        names = ", ".join(f"'{product_name(p)}'" for p in step.products)
        cel += f" && {attrs}.productName in [{names}]"
    return cel


def claim_manifest(
    name: str,
    namespace: str,
    steps: Sequence[Step],
    *,
    device_class: str = DEVICE_CLASS,
    driver: str = DRIVER,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ResourceClaim of one spawn: one ``firstAvailable`` subrequest per step, in order
    (at most :data:`MAX_STEPS`; ValueError for none)."""
    if not steps:
        raise ValueError("a claim needs at least one step")
    subrequests = [
        {
            "name": step_name(i, step.profile),
            "deviceClassName": device_class,
            "selectors": [{"cel": {"expression": selector(step, driver)}}],
            "allocationMode": "ExactCount",
            "count": 1,
        }
        for i, step in enumerate(steps[:MAX_STEPS])
    ]
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceClaim",
        "metadata": meta,
        "spec": {"devices": {"requests": [{"name": REQUEST, "firstAvailable": subrequests}]}},
    }


def claim_steps(claim: Any) -> list[str]:
    """The subrequest names of a claim made by :func:`claim_manifest`, in order."""
    requests = _dig(claim, "spec", "devices", "requests")
    for request in requests if isinstance(requests, list) else []:
        if isinstance(request, Mapping) and request.get("name") == REQUEST:
            subs = request.get("firstAvailable")
            return (
                [s.get("name") for s in subs if isinstance(s, Mapping)]
                if isinstance(subs, list)
                else []
            )
    return []


def allocation(claim: Any, driver: str = DRIVER) -> Allocation | None:
    """The step the scheduler gave ``claim``, from ``status.allocation``; None while it is
    not allocated, or when the allocation cannot be read."""
    results = _dig(claim, "status", "allocation", "devices", "results")
    if not isinstance(results, list):
        return None
    steps = claim_steps(claim)
    for result in results:
        if not isinstance(result, Mapping) or result.get("driver") != driver:
            continue
        request, _, sub = str(result.get("request") or "").partition("/")
        if request != REQUEST or sub not in steps:
            continue
        device, pool = result.get("device"), result.get("pool")
        if not isinstance(device, str) or not isinstance(pool, str):
            return None
        return Allocation(steps.index(sub), sub, device, pool, driver, allocated_node(claim))
    return None


def allocated_node(claim: Any) -> str | None:
    """The node an allocated claim's devices are on (its allocation's node selector)."""
    terms = _dig(claim, "status", "allocation", "nodeSelector", "nodeSelectorTerms")
    for term in terms if isinstance(terms, list) else []:
        for key in ("matchFields", "matchExpressions"):
            for match in (term.get(key) if isinstance(term, Mapping) else None) or []:
                values = match.get("values") if isinstance(match, Mapping) else None
                if (
                    isinstance(match, Mapping)
                    and match.get("key") in ("metadata.name", "kubernetes.io/hostname")
                    and match.get("operator") == "In"
                    and isinstance(values, list)
                    and len(values) == 1
                    and isinstance(values[0], str)
                ):
                    return values[0]
    return None


def allocated_devices(claim: Any) -> list[tuple[str, str, str]]:
    """(driver, pool, device) of every device allocated to ``claim``."""
    results = _dig(claim, "status", "allocation", "devices", "results")
    out = []
    for r in results if isinstance(results, list) else []:
        if isinstance(r, Mapping) and all(
            isinstance(r.get(k), str) for k in ("driver", "pool", "device")
        ):
            out.append((r["driver"], r["pool"], r["device"]))
    return out


def unallocated_reason(claim: Any) -> str | None:
    """What the claim's status says against it (a condition with status False), if any."""
    conditions = _dig(claim, "status", "conditions")
    for c in conditions if isinstance(conditions, list) else []:
        if isinstance(c, Mapping) and c.get("status") == "False" and c.get("message"):
            return str(c["message"])[:300]
    return None


def chain_steps(candidates: Sequence[Any], promised: Iterable[Any] = ()) -> list[Step]:
    """The claim's steps for an admitted decision: its candidates up to the granted one
    (``Decision.candidates``), less those the tier or the quota ruled out, one step per
    profile (its GPU products together), at most :data:`MAX_STEPS` ending with the granted.

    The granted candidate is the largest the hub's quota check passed: the scheduler may
    only pick it or a smaller step that was full when the hub looked, so the quota the hub
    checked is the most this spawn can be charged. ``promised``: slice types full only
    because other spawns in flight hold them (their pods not placed yet): left out, or this
    claim would take the slice the hub promised them and leave their claims unallocatable.
    """
    promised = set(promised)
    steps: list[Step] = []
    for c in candidates:
        if c.outcome not in ("granted", "full", "unusable"):
            continue
        if c.outcome != "granted" and c.slice_type in promised:
            continue
        kind = c.slice_type
        if steps and steps[-1].profile == kind.profile:
            last = steps[-1]
            if kind.product and kind.product not in last.products:
                steps[-1] = Step(last.profile, (*last.products, kind.product))
        else:
            steps.append(Step(kind.profile, (kind.product,) if kind.product else ()))
    return steps[-MAX_STEPS:]


def allocated_note(requested: str, granted: str, fallback: bool) -> str:
    """The progress line once the scheduler has allocated the claim."""
    if not fallback:
        return f"The scheduler allocated your {granted} slice."
    return f"The scheduler allocated a {granted} slice: {requested} was full, so you got {granted}."


# ------------------------------------------------------------------ ResourceSlices


@dataclass(frozen=True)
class SliceDevices:
    """What one ResourceSlice of the driver publishes."""

    node: str | None
    pool: str
    #: device name -> MIG profile, for the devices that are MIG devices we can read
    profiles: Mapping[str, str]
    #: attribute names seen on devices that are not readable as MIG devices
    other_attributes: frozenset[str] = frozenset()


def read_slice(obj: Any, driver: str = DRIVER) -> SliceDevices | None:
    """The MIG devices of one ResourceSlice of ``driver``; None for another driver's or a
    garbled slice."""
    spec = obj.get("spec") if isinstance(obj, Mapping) else None
    if not isinstance(spec, Mapping) or spec.get("driver") != driver:
        return None
    node = spec.get("nodeName") if isinstance(spec.get("nodeName"), str) else None
    pool = _dig(spec, "pool", "name")
    if not isinstance(pool, str):
        return None
    profiles: dict[str, str] = {}
    others: set[str] = set()
    devices = spec.get("devices")
    for device in devices if isinstance(devices, list) else []:
        if not isinstance(device, Mapping) or not isinstance(device.get("name"), str):
            continue
        attrs = device.get("attributes")
        attrs = attrs if isinstance(attrs, Mapping) else {}
        kind, profile = _attr(attrs, "type", driver), _attr(attrs, "profile", driver)
        if kind == "mig" and isinstance(profile, str) and profile:
            profiles[device["name"]] = profile
        elif kind not in ("gpu", "vfio"):  # a whole GPU is no MIG device, but not garbled
            others.update(str(a) for a in attrs)
    return SliceDevices(node, pool, profiles, frozenset(others))


def _attr(attrs: Mapping, name: str, driver: str) -> Any:
    value = attrs.get(name, attrs.get(f"{driver}/{name}"))
    if not isinstance(value, Mapping):
        return None
    return value.get("string")


def device_counts(slices: Iterable[SliceDevices]) -> dict[str, dict[str, int]]:
    """node -> profile -> MIG devices its slices publish."""
    counts: dict[str, dict[str, int]] = {}
    for s in slices:
        if s.node is None:
            continue
        per = counts.setdefault(s.node, {})
        for profile in s.profiles.values():
            per[profile] = per.get(profile, 0) + 1
    return counts


def unreadable(slices: Iterable[SliceDevices]) -> str | None:
    """When the driver's slices publish devices but none readable as MIG devices: which
    attribute names were seen instead (one line), else None."""
    seen: set[str] = set()
    for s in slices:
        if s.profiles:
            return None
        seen |= s.other_attributes
    if not seen:
        return None
    return (
        f"no {DRIVER} device has the attributes {' and '.join(NEEDED_ATTRIBUTES)} "
        f"(type=mig); attributes seen: {', '.join(sorted(seen)[:12])}"
    )


# ------------------------------------------------------------------ the cache's shape


def node_with_devices(node: Any, profiles: Mapping[str, int] | None) -> Any:
    """The Node as the cache reads it: its ``nvidia.com/mig-*`` capacity and allocatable are
    the MIG devices its ResourceSlices publish (none if none). A non-dict is returned as is."""
    if not isinstance(node, Mapping):
        return node
    out = copy.copy(dict(node))
    status = dict(out.get("status") or {}) if isinstance(out.get("status"), Mapping) else {}
    for key in ("capacity", "allocatable"):
        current = status.get(key) if isinstance(status.get(key), Mapping) else {}
        kept = {k: v for k, v in current.items() if not str(k).startswith(MIG_PREFIX)}
        kept.update({MIG_PREFIX + p: str(n) for p, n in sorted((profiles or {}).items())})
        status[key] = kept
    out["status"] = status
    return out


def pod_claim_names(pod: Any) -> list[str]:
    """The names of the ResourceClaims a Pod uses (direct, or made from a template)."""
    spec = _dig(pod, "spec")
    names = []
    generated = {}
    for st in _dig(pod, "status", "resourceClaimStatuses") or []:
        if isinstance(st, Mapping) and isinstance(st.get("resourceClaimName"), str):
            generated[st.get("name")] = st["resourceClaimName"]
    for rc in (spec.get("resourceClaims") if isinstance(spec, Mapping) else None) or []:
        if not isinstance(rc, Mapping):
            continue
        name = rc.get("resourceClaimName") or generated.get(rc.get("name"))
        if isinstance(name, str):
            names.append(name)
    return names


def pod_with_claims(
    pod: Any,
    claims: Mapping[str, Any],
    device_profiles: Mapping[tuple[str, str, str], str],
    driver: str = DRIVER,
) -> Any:
    """The Pod as the cache reads it: each MIG device allocated to its claims (``claims``:
    "namespace/name" -> claim) becomes one ``nvidia.com/mig-<profile>`` request of its first
    container; on the hub's pods the granted profile is the allocated one. A pod with no
    allocated MIG device is returned as is."""
    if not isinstance(pod, Mapping):
        return pod
    namespace = _dig(pod, "metadata", "namespace") or "default"
    granted: list[str] = []
    for name in pod_claim_names(pod):
        for key in allocated_devices(claims.get(f"{namespace}/{name}")):
            if key[0] == driver and key in device_profiles:
                granted.append(device_profiles[key])
    containers = _dig(pod, "spec", "containers")
    if not granted or not isinstance(containers, list) or not containers:
        return pod
    out = copy.deepcopy(dict(pod))
    first = out["spec"]["containers"][0]
    if not isinstance(first, dict):
        return pod
    resources = first.setdefault("resources", {})
    limits = resources.setdefault("limits", {}) if isinstance(resources, dict) else None
    if not isinstance(limits, dict):
        return pod
    for profile in granted:
        key = MIG_PREFIX + profile
        held = str(limits.get(key, "0"))
        limits[key] = str((int(held) if held.isdigit() else 0) + 1)
    annotations = _dig(out, "metadata", "annotations")
    if isinstance(annotations, dict) and GRANTED_ANNOTATION in annotations:
        annotations[GRANTED_ANNOTATION] = granted[0]
    return out


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def reshape(
    nodes: Sequence[Any], pods: Sequence[Any], slices: Sequence[Any], claims: Sequence[Any]
) -> tuple[list[Any], list[Any]]:
    """Listed Nodes and Pods as the cache reads them under DRA (``mig-spawner explain
    --live``): nodes offer the devices their slices publish, pods hold their claims'
    allocated devices. With no slice of the driver, both are returned unchanged."""
    read = [s for s in (read_slice(obj) for obj in slices) if s is not None]
    if not read:
        return list(nodes), list(pods)
    counts = device_counts(read)
    profiles = {(DRIVER, s.pool, d): p for s in read for d, p in s.profiles.items()}
    by_key = {}
    for claim in claims:
        namespace = _dig(claim, "metadata", "namespace")
        name = _dig(claim, "metadata", "name")
        if isinstance(namespace, str) and isinstance(name, str):
            by_key[f"{namespace}/{name}"] = claim
    out_nodes = [node_with_devices(n, counts.get(_dig(n, "metadata", "name"), {})) for n in nodes]
    return out_nodes, [pod_with_claims(p, by_key, profiles) for p in pods]
