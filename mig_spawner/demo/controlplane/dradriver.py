"""A stand-in for NVIDIA's DRA driver on the real control plane: ResourceSlices and the
DeviceClass, no kubelet plugin.

For each GPU node of a cluster file it publishes one ResourceSlice (``resource.k8s.io/v1``)
shaped as ``gpu.nvidia.com``'s (kubernetes-sigs/dra-driver-nvidia-gpu) are for MIG devices:
the pool is the node, each MIG device of each GPU is a device named
``gpu-<minor>-mig-<profile>-<profile id>-<placement start>`` with the attributes ``type``
("mig"), ``profile``, ``productName`` (as NVML names the GPU), ``uuid``, ``parentUUID``,
``brand``, ``architecture`` and ``index``, and the capacities ``memory`` (bytes) and
``multiprocessors``. It also makes the driver's DeviceClass ``mig.nvidia.com`` (the
driver's own CEL selector). The scheduler allocates from them; the node agent then runs
the pod as any other (a kubelet would call the driver's plugin to prepare the device).

``attribute_names`` renames attributes: a driver publishing other names (bad input).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from ...core.dra import API_VERSION, DEVICE_CLASS, DRIVER, product_name
from ..emulator.clusterfile import ClusterSpec, NodeSpec

#: the driver's DeviceClass selector for MIG devices
MIG_CLASS_CEL = f"device.driver == '{DRIVER}' && device.attributes['{DRIVER}'].type == 'mig'"


def device_class(name: str = DEVICE_CLASS) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {"selectors": [{"cel": {"expression": MIG_CLASS_CEL}}]},
    }


def _uuid(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, "/".join(str(p) for p in parts)))


def node_devices(spec: NodeSpec, rename: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The MIG devices of one node, as the driver publishes them."""
    model = spec.model
    if model is None:
        return []
    product = product_name(spec.product or model.products[0])
    rename = rename or {}
    devices = []
    for minor, layout in enumerate(spec.layouts):
        parent = "GPU-" + _uuid(spec.name, minor)
        placement: dict[str, int] = {}
        for index, profile in enumerate(layout or []):
            start = placement.get(profile.name, 0)
            placement[profile.name] = start + 1
            pid = profile.gi_profile_id if profile.gi_profile_id is not None else index
            name = f"gpu-{minor}-mig-{profile.name.replace('.', '')}-{pid}-{start}".lower()
            attrs = {
                "type": {"string": "mig"},
                "profile": {"string": profile.name},
                "productName": {"string": product},
                "brand": {"string": "Nvidia"},
                "architecture": {"string": "Hopper" if "H1" in product else "Ampere"},
                "uuid": {"string": "MIG-" + _uuid(spec.name, minor, index)},
                "parentUUID": {"string": parent},
                "index": {"int": index},
            }
            capacity = {
                "memory": {"value": str((profile.memory_mib or 0) * 1024 * 1024)},
                "multiprocessors": {"value": str(profile.sm_count or 0)},
            }
            devices.append(
                {
                    "name": name,
                    "attributes": {rename.get(k, k): v for k, v in attrs.items()},
                    "capacity": capacity,
                }
            )
    return devices


def resource_slices(
    spec: ClusterSpec, rename: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One ResourceSlice per node with MIG devices."""
    out = []
    for node in spec.nodes:
        devices = node_devices(node, rename)
        if not devices:
            continue
        out.append(
            {
                "apiVersion": API_VERSION,
                "kind": "ResourceSlice",
                "metadata": {"name": f"{node.name}-{DRIVER}"},
                "spec": {
                    "driver": DRIVER,
                    "nodeName": node.name,
                    "pool": {"name": node.name, "generation": 1, "resourceSliceCount": 1},
                    "devices": devices,
                },
            }
        )
    return out


async def publish(
    api: Any,
    spec: ClusterSpec,
    *,
    with_class: bool = True,
    rename: Mapping[str, str] | None = None,
) -> None:
    """Create (or replace) the slices, and the DeviceClass, through the agent's client."""
    base = "/apis/resource.k8s.io/v1"
    if with_class:
        status, answer = await api.request("POST", f"{base}/deviceclasses", device_class())
        if status not in (201, 409):
            raise RuntimeError(f"DeviceClass: {status} {answer}")
    for body in resource_slices(spec, rename):
        name, node = body["metadata"]["name"], body["spec"]["nodeName"]
        # owned by its Node, as a kubelet plugin's slices are: gone with the node, and never
        # collected for an earlier node of the same name
        status, answer = await api.request("GET", f"/api/v1/nodes/{node}")
        if status == 200:
            uid = answer["metadata"]["uid"]
            owner = {"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}
            body["metadata"]["ownerReferences"] = [owner]
        await api.request("DELETE", f"{base}/resourceslices/{name}")
        status, answer = await api.request("POST", f"{base}/resourceslices", body)
        if status != 201:
            raise RuntimeError(f"ResourceSlice {name}: {status} {answer}")


async def withdraw(api: Any, spec: ClusterSpec) -> None:
    for node in spec.nodes:
        await api.request("DELETE", f"/apis/resource.k8s.io/v1/resourceslices/{node.name}-{DRIVER}")
