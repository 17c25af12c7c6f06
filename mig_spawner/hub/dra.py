"""The DRA backend's shell: settings, the watch-fed devices and claims, and each spawn's claim.

With ``MIGSpawner.backend = "dra"`` (default ``"device-plugin"``):

* the hub's cluster view also lists and watches ResourceSlices and ResourceClaims
  (:class:`DraCache`); the cache it decides on reads each Node's MIG capacity from the
  devices NVIDIA's driver publishes for it, and each Pod's slice from its claims'
  allocations (:mod:`mig_spawner.core.dra`), so the form, ``explain``, the quotas and a
  restarted hub's usage come from ResourceSlices and allocated claims;
* a GPU spawn is still decided, and its quota checked, by the hub before anything is
  created; then, instead of an extended-resource limit and a pinned node, the hub creates a
  ResourceClaim whose ``firstAvailable`` subrequests are the chain's steps up to the
  decided one (:func:`mig_spawner.core.dra.chain_steps`), and the pod references it: the
  scheduler picks the step and the node;
* once the pod runs, what was granted is read from the claim's allocation and shown
  exactly as the device plugin's fallback is (progress, admin page, record);
* a stop, a cancel or a failed start deletes the claim; the pod owns it too, so the
  garbage collector frees it when the pod goes.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from kubernetes_asyncio.client import CoreV1ResourceClaim, ResourceV1Api, V1PodResourceClaim
from kubernetes_asyncio.client.exceptions import ApiException
from traitlets import CaselessStrEnum, Unicode
from traitlets.config import Configurable

from ..core import dra
from ..core.candidates import GRANTED
from ..core.claim import grant_record

CLAIM_ANNOTATION = "mig-spawner/resource-claim"
#: claim deletions under way (a task nobody holds may be collected before it ran)
_DELETING: set[asyncio.Task] = set()


class DraSettings(Configurable):
    """``MIGSpawner``'s backend settings (a mixin: spawner.py stays small)."""

    backend = CaselessStrEnum(
        ["device-plugin", "dra"],
        default_value="device-plugin",
        config=True,
        help="""
        How a GPU spawn gets its slice. ``"device-plugin"``: the pod requests the MIG
        extended resource (``nvidia.com/mig-1g.10gb``) of the slice the hub decided, pinned
        to the node the hub chose. ``"dra"``: Dynamic Resource Allocation
        (``resource.k8s.io/v1``, Kubernetes 1.34+, with NVIDIA's DRA driver
        ``gpu.nvidia.com``): the hub decides and checks the quota as before, then creates a
        ResourceClaim per spawn whose prioritized list (``firstAvailable``) holds the
        tier's fallback chain up to the decided slice; the scheduler allocates the first
        step with a free device, atomically with placing the pod. Availability and usage
        are read from ResourceSlices and allocated claims. The hub's ServiceAccount needs
        the ``resource.k8s.io`` rules of helm-values/rbac/clusterrole.yaml.
        """,
    )
    dra_device_class = Unicode(
        dra.DEVICE_CLASS,
        config=True,
        help="""With ``backend = "dra"``: the DeviceClass of MIG devices the claims select
        (NVIDIA's driver installs ``mig.nvidia.com``). It must exist: a spawn is refused with
        one line saying so otherwise.""",
    )


# ------------------------------------------------------------------ the watch-fed cache


class DraCache:
    """Raw Nodes, Pods, ResourceSlices and ResourceClaims, fed to the cache as the shape
    :class:`~mig_spawner.core.cluster.ClusterState` reads (see :mod:`mig_spawner.core.dra`)."""

    def __init__(self, state: Any, resource_api: Any, driver: str = dra.DRIVER) -> None:
        self.state, self.api, self.driver = state, resource_api, driver
        self.nodes: dict[str, Any] = {}
        self.pods: dict[str, Any] = {}
        self.slices: dict[str, dra.SliceDevices] = {}
        self.claims: dict[str, Any] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.profiles: dict[tuple[str, str, str], str] = {}
        #: claim key -> pod keys using it
        self.users: dict[str, set[str]] = {}
        #: the DeviceClass checked once it exists (a missing one is asked again each spawn)
        self.class_seen = False

    def feeds(self) -> list[tuple[str, Any]]:
        return [
            ("resourceslices", self.api.list_resource_slice),
            ("resourceclaims", self.api.list_resource_claim_for_all_namespaces),
        ]

    def applier(self, kind: str):
        return {
            "nodes": self.apply_node_event,
            "pods": self.apply_pod_event,
            "resourceslices": self.apply_slice_event,
            "resourceclaims": self.apply_claim_event,
        }[kind]

    def replacer(self, kind: str):
        def replace_all(objs):
            current = {
                "nodes": self.nodes,
                "pods": self.pods,
                "resourceslices": self.slices,
                "resourceclaims": self.claims,
            }[kind]
            apply, problems, seen = self.applier(kind), [], set()
            for obj in objs:
                try:
                    apply("MODIFIED", obj)
                except ValueError as e:
                    problems.append(str(e))
                    continue
                seen.add(_key(obj, namespaced=kind in ("pods", "resourceclaims")))
            for gone in [k for k in current if k not in seen]:
                namespace, _, name = gone.rpartition("/")
                apply("DELETED", {"metadata": {"namespace": namespace or None, "name": name}})
            return problems

        return replace_all

    def apply_node_event(self, event_type: str, obj: Any):
        name = _key(obj, namespaced=False)
        if event_type == "DELETED":
            self.nodes.pop(name, None)
        else:
            self.nodes[name] = obj
        return self.state.apply_node_event(
            event_type, dra.node_with_devices(obj, self.counts.get(name))
        )

    def apply_pod_event(self, event_type: str, obj: Any):
        key = _key(obj, namespaced=True)
        old = self.pods.pop(key, None)
        for name in dra.pod_claim_names(old):
            self.users.get(_in(old, name), set()).discard(key)
        if event_type != "DELETED":
            self.pods[key] = obj
            for name in dra.pod_claim_names(obj):
                self.users.setdefault(_in(obj, name), set()).add(key)
        return self.state.apply_pod_event(
            event_type, dra.pod_with_claims(obj, self.claims, self.profiles, self.driver)
        )

    def apply_slice_event(self, event_type: str, obj: Any):
        name = _key(obj, namespaced=False)
        if not name:
            raise ValueError("not a ResourceSlice: metadata.name is missing")
        old = self.slices.pop(name, None)
        parsed = None if event_type == "DELETED" else dra.read_slice(obj, self.driver)
        if parsed is not None:
            self.slices[name] = parsed
        touched = {s.node for s in (old, parsed) if s is not None and s.node}
        self.counts = dra.device_counts(self.slices.values())
        self.profiles = {
            (self.driver, s.pool, device): profile
            for s in self.slices.values()
            for device, profile in s.profiles.items()
        }
        for node in sorted(touched):
            if node in self.nodes:
                self.apply_node_event("MODIFIED", self.nodes[node])
        # pods listed before their devices: what their claims hold is known only now
        for pod in sorted({key for keys in self.users.values() for key in keys}):
            if pod in self.pods:
                self.apply_pod_event("MODIFIED", self.pods[pod])
        return parsed

    def apply_claim_event(self, event_type: str, obj: Any):
        key = _key(obj, namespaced=True)
        if not key.partition("/")[2]:
            raise ValueError("not a ResourceClaim: metadata.name is missing")
        if event_type == "DELETED":
            self.claims.pop(key, None)
        else:
            self.claims[key] = obj
        for pod in sorted(self.users.get(key, ())):
            if pod in self.pods:
                self.apply_pod_event("MODIFIED", self.pods[pod])
        return obj

    def problem(self) -> str | None:
        """One line when the driver's slices hold no device a claim could select."""
        return dra.unreadable(self.slices.values())


def _key(obj: Any, namespaced: bool) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        raise ValueError("not a Kubernetes object: metadata is missing")
    name = meta.get("name") if isinstance(meta.get("name"), str) else ""
    if not namespaced:
        return name
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else "default"
    return f"{namespace}/{name}"


def _in(pod: Any, claim: str) -> str:
    return f"{_key(pod, namespaced=True).partition('/')[0]}/{claim}"


# ------------------------------------------------------------------ one spawn's claim


def active(spawner: Any) -> bool:
    return getattr(spawner, "backend", "device-plugin") == "dra" and bool(spawner.tiers)


async def setup_problem(spawner: Any, view: Any) -> str | None:
    """Why no claim of this hub can be allocated, in one line (else None): the DeviceClass
    is missing, or the driver publishes devices under other attribute names."""
    cache = view.dra
    if cache is None:
        return None
    if not cache.class_seen:
        try:
            await cache.api.read_device_class(spawner.dra_device_class)
            cache.class_seen = True
        except ApiException as e:
            if e.status == 404:
                return (
                    f"the DeviceClass {spawner.dra_device_class} does not exist "
                    f"(is NVIDIA's DRA driver installed?)"
                )
            return f"the DeviceClass {spawner.dra_device_class} cannot be read ({e.status})"
    return cache.problem()


async def refuse_if_misconfigured(spawner: Any, view: Any) -> None:
    """Refuse a GPU start, in one line, that no claim could serve (backend "dra" only)."""
    if not active(spawner) or view.dra is None:
        return
    problem = await setup_problem(spawner, view)
    if problem is not None:
        spawner.log.error("mig-spawner (DRA) cannot start GPU servers: %s", problem)
        raise spawner._refused(
            f"GPU spawning is misconfigured on this hub: {problem}; please tell your hub admin.",
            reason="config",
            status=500,
            counted=True,
        )


async def create_claim(spawner: Any) -> str:
    """Create this start's ResourceClaim (before its pod); returns its name."""
    decision = spawner.claim.decision
    name = f"{dra.claim_name(spawner.pod_name)[:240]}-{secrets.token_hex(3)}"
    body = dra.claim_manifest(
        name,
        spawner.namespace,
        dra.chain_steps(decision.candidates, promised(spawner.cluster_view().state, decision)),
        device_class=spawner.dra_device_class,
        labels={"app.kubernetes.io/managed-by": "mig-spawner"},
        annotations={"mig-spawner/pod": spawner.pod_name, "mig-spawner/hub": spawner.hub_id},
    )
    api = spawner.cluster_view().dra.api
    try:
        await api.create_namespaced_resource_claim(spawner.namespace, body)
    except ApiException as e:
        why = f"Kubernetes answered {e.status} {e.reason}"
        spawner.log.error("%s: creating ResourceClaim %s: %s", spawner._log_name, name, why)
        raise spawner._refused(
            f"Your server's GPU claim could not be created ({why}); please tell your hub admin.",
            reason="config",
            status=500,
            counted=True,
        ) from None
    spawner.dra_claims = [*getattr(spawner, "dra_claims", []), name]
    spawner.dra_told = None
    return name


def promised(state: Any, decision: Any) -> set:
    """The full slice types of ``decision`` that some node would still have free but for
    other spawns' reservations (their pods not placed yet): not this claim's to take."""
    held = Counter((r.node, r.slice_type.resource) for r in state.reservations.values())
    out = set()
    for c in decision.candidates:
        if c.outcome == GRANTED:
            continue
        for node in state.nodes_offering(c.slice_type):
            if state.free(node, c.slice_type) + held[(node.name, c.slice_type.resource)] > 0:
                out.add(c.slice_type)
                break
    return out


def reference_claim(manifest: Any, name: str) -> Any:
    """The pod uses the claim: ``spec.resourceClaims`` and its first container's claims."""
    manifest.spec.resource_claims = [V1PodResourceClaim(name=dra.REQUEST, resource_claim_name=name)]
    resources = manifest.spec.containers[0].resources
    resources.claims = [CoreV1ResourceClaim(name=dra.REQUEST)]
    manifest.metadata.annotations = {
        **(manifest.metadata.annotations or {}),
        CLAIM_ANNOTATION: name,
    }
    return manifest


def delete_claims(spawner: Any) -> None:
    """Delete every claim this spawner created and still holds (in the background)."""
    names, spawner.dra_claims = list(getattr(spawner, "dra_claims", [])), []
    view = spawner._current_view()
    if view is None or view.dra is None:
        return
    if not names:  # a server started before a hub restart: its pod names its claim
        pod = view.dra.pods.get(spawner.pod_key)
        names = [n for n in dra.pod_claim_names(pod) if n.startswith(spawner.pod_name)]
    for name in names:
        task = asyncio.ensure_future(_delete(view.dra.api, spawner.namespace, name, spawner.log))
        _DELETING.add(task)
        task.add_done_callback(_DELETING.discard)


async def _delete(api: Any, namespace: str, name: str, log: Any) -> None:
    try:
        await api.delete_namespaced_resource_claim(name, namespace)
    except ApiException as e:
        if e.status != 404:
            log.warning(
                "Deleting ResourceClaim %s/%s failed: %s %s", namespace, name, e.status, e.reason
            )
    except Exception as e:  # the hub goes on; the pod's ownerReference frees it later
        log.warning("Deleting ResourceClaim %s/%s failed: %s", namespace, name, e)


def unplaceable(spawner: Any) -> str | None:
    """Why this start's claim cannot be allocated, from the claim's status, if it says."""
    view = spawner._current_view()
    names = getattr(spawner, "dra_claims", [])
    if view is None or view.dra is None or not names:
        return None
    claim = view.dra.claims.get(f"{spawner.namespace}/{names[-1]}")
    reason = dra.unallocated_reason(claim)
    return f"its GPU claim cannot be allocated: {reason}" if reason else None


async def granted(spawner: Any) -> None:
    """The pod runs: own the claim by the pod, read what the scheduler allocated, and make
    the claim's record (progress, admin page, saved state) say it."""
    names = getattr(spawner, "dra_claims", [])
    view = spawner._current_view()
    if not names or view is None or view.dra is None:
        return
    name, api = names[-1], view.dra.api
    await own_claim(spawner)
    if getattr(spawner, "dra_told", None) == name:
        return  # already read and told (note_allocation)
    claim = view.dra.claims.get(f"{spawner.namespace}/{name}")
    deadline = time.monotonic() + 5
    while dra.allocation(claim) is None and time.monotonic() < deadline:
        try:
            claim = api.api_client.sanitize_for_serialization(
                await api.read_namespaced_resource_claim(name, spawner.namespace)
            )
        except Exception:
            pass
        if dra.allocation(claim) is None:
            await asyncio.sleep(0.2)
    allocation = dra.allocation(claim)
    if allocation is None:
        spawner.log.warning("%s: the allocation of %s cannot be read", spawner._log_name, name)
        return
    apply_allocation(spawner, allocation)


async def own_claim(spawner: Any) -> None:
    """Once this start's pod is seen: make it the claim's owner (once), so the garbage
    collector deletes the claim with the pod even if the hub is gone by then."""
    names = getattr(spawner, "dra_claims", [])
    view = spawner._current_view()
    if not names or view is None or view.dra is None:
        return
    name = names[-1]
    pod = view.dra.pods.get(spawner.pod_key)  # the pod that references this very claim
    uid = ((pod or {}).get("metadata") or {}).get("uid")
    if getattr(spawner, "dra_owned", None) == name or not uid:
        return
    if uid in getattr(spawner, "_earlier_pod_uids", ()):
        return  # a pod this start replaced, still listed
    if name not in dra.pod_claim_names(pod):
        return  # an earlier pod of the same name, still listed
    spawner.dra_owned = name
    owner = {"apiVersion": "v1", "kind": "Pod", "name": spawner.pod_name, "uid": uid}
    try:
        await view.dra.api.patch_namespaced_resource_claim(
            name, spawner.namespace, {"metadata": {"ownerReferences": [owner]}}
        )
    except Exception as e:  # the hub still deletes it on stop
        spawner.log.warning("Owning ResourceClaim %s by its pod failed: %s", name, e)


async def disown_claim(spawner: Any) -> None:
    """Before this start's pod is replaced (hub/startstop.py): the claim must not go with
    it, so its owner is removed; :func:`own_claim` names the new pod."""
    names = getattr(spawner, "dra_claims", [])
    view = spawner._current_view()
    if not names or view is None or view.dra is None or getattr(spawner, "dra_owned", None) is None:
        return
    spawner.dra_owned = None
    try:
        await view.dra.api.patch_namespaced_resource_claim(
            names[-1], spawner.namespace, {"metadata": {"ownerReferences": None}}
        )
    except Exception as e:
        spawner.log.warning("Disowning ResourceClaim %s failed: %s", names[-1], e)


def note_allocation(spawner: Any) -> None:
    """Once the watch shows this start's claim allocated: record and tell it (once)."""
    names = getattr(spawner, "dra_claims", [])
    view = spawner._current_view()
    if not names or view is None or view.dra is None:
        return
    if getattr(spawner, "dra_told", None) == names[-1]:
        return
    allocation = dra.allocation(view.dra.claims.get(f"{spawner.namespace}/{names[-1]}"))
    if allocation is not None:
        apply_allocation(spawner, allocation)


def apply_allocation(spawner: Any, allocation: dra.Allocation) -> None:
    """The claim's record and decision as the scheduler allocated, and the user told."""
    current = spawner.claim
    decision = current.decision if current is not None else None
    names = getattr(spawner, "dra_claims", [])
    if decision is None or not names:
        return
    spawner.dra_told = names[-1]
    steps = dra.chain_steps(decision.candidates)
    if allocation.step >= len(steps):
        return
    profile = steps[allocation.step].profile
    index = next(
        (i for i, c in enumerate(decision.candidates) if c.slice_type.profile == profile), None
    )
    if index is None:
        return
    chosen = decision.candidates[index]
    candidates = (*decision.candidates[:index], replace(chosen, outcome=GRANTED))
    new = replace(
        decision,
        granted=chosen.slice_type,
        step=chosen.step,
        node=allocation.node or decision.node,
        candidates=candidates,
    )
    record = grant_record(current.grant.get("profile"), new, current.grant.get("tier_name", ""))
    spawner.claim = replace(current, decision=new, grant=MappingProxyType(record), node=new.node)
    requested = decision.requested.profile if decision.requested else profile
    note = dra.allocated_note(requested, chosen.slice_type.profile, new.fallback)
    spawner.placement_notes.append(note)
    spawner.log.info("%s: %s", spawner._log_name, note)


def cache_factory(spawner: Any, client: Any):
    """The cluster view's DRA cache maker with ``backend = "dra"`` (hub/watch.py), else None."""
    if not active(spawner):
        return None
    api = ResourceV1Api(client)
    return lambda state: DraCache(state, api)
