"""Node objects from a :class:`NodeSpec`, labelled as GPU Feature Discovery (GFD), the NVIDIA
device plugin and MIG Manager label a real node, with the extended resources the device
plugin advertises.

Every GPU node: ``nvidia.com/gpu.present=true``, ``gpu.product``, ``gpu.count``,
``gpu.memory`` (MiB), ``gpu.family``, ``gpu.compute.major/minor``, ``gpu.replicas``,
``gpu.sharing-strategy``, ``gpu.mode``, ``gpu.machine``, ``mig.capable``, ``mig.strategy``,
``mps.capable``, ``cuda.driver-version.*``, ``cuda.runtime-version.*``, ``mig.config`` and
``mig.config.state=success``. Then by strategy:

* ``mixed``: per MIG profile present, ``nvidia.com/mig-<profile>.{count,memory,
  multiprocessors,slices.gi,slices.ci,product,replicas,sharing-strategy}`` and the resource
  ``nvidia.com/mig-<profile>`` (capacity = allocatable = count); GPUs with MIG disabled are
  ``nvidia.com/gpu``;
* ``single``: every GPU MIG-enabled with one profile: ``gpu.product=<product>-MIG-<profile>``,
  ``gpu.count`` = number of MIG devices, ``gpu.memory`` = MiB of one device, plus
  ``gpu.multiprocessors`` and ``gpu.slices.{gi,ci}``, resource ``nvidia.com/gpu`` = devices;
  every GPU MIG-disabled: whole GPUs; anything else: ``<product>-MIG-INVALID``, count 0;
* ``none``: whole GPUs as ``nvidia.com/gpu``, whatever MIG says.

Engine-count labels are not written (the catalog does not hold engine counts).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .clusterfile import NodeSpec
from .store import now

DRIVER_VERSION = ("580", "95", "05")
CUDA_RUNTIME = ("13", "0")
_FAMILIES = (  # catalog key prefix -> (gpu.family, compute major, compute minor)
    ("rtx-pro", ("blackwell", "12", "0")),
    ("gb2", ("blackwell", "10", "0")),
    ("b2", ("blackwell", "10", "0")),
    ("gh2", ("hopper", "9", "0")),
    ("h", ("hopper", "9", "0")),
    ("a", ("ampere", "8", "0")),
)


def _family(key: str) -> tuple[str, str, str]:
    return next(
        (info for prefix, info in _FAMILIES if key.startswith(prefix)), ("unknown", "0", "0")
    )


def gpu_labels_and_resources(spec: NodeSpec) -> tuple[dict[str, str], dict[str, str]]:
    """The NVIDIA labels and extended resources of a GPU node (both empty for a CPU node)."""
    model = spec.model
    if model is None or spec.gpus == 0:
        return {}, {}
    product = spec.product or model.products[0]
    family, major, minor = _family(model.key)
    labels: dict[str, str] = {
        "feature.node.kubernetes.io/pci-10de.present": "true",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.count": str(spec.gpus),
        "nvidia.com/gpu.family": family,
        "nvidia.com/gpu.compute.major": major,
        "nvidia.com/gpu.compute.minor": minor,
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none",
        "nvidia.com/gpu.mode": "compute",
        "nvidia.com/gpu.machine": "Emulated",
        "nvidia.com/mig.capable": "true",
        "nvidia.com/mig.strategy": spec.strategy,
        "nvidia.com/mps.capable": "false",
        "nvidia.com/mig.config": spec.mig_config,
        "nvidia.com/mig.config.state": "success",
        "nvidia.com/cuda.driver-version.major": DRIVER_VERSION[0],
        "nvidia.com/cuda.driver-version.minor": DRIVER_VERSION[1],
        "nvidia.com/cuda.driver-version.revision": DRIVER_VERSION[2],
        "nvidia.com/cuda.driver-version.full": ".".join(DRIVER_VERSION),
        "nvidia.com/cuda.runtime-version.major": CUDA_RUNTIME[0],
        "nvidia.com/cuda.runtime-version.minor": CUDA_RUNTIME[1],
        "nvidia.com/cuda.runtime-version.full": ".".join(CUDA_RUNTIME),
    }
    if model.memory_mib:
        labels["nvidia.com/gpu.memory"] = str(model.memory_mib)
    resources: dict[str, str] = {}
    whole = [layout for layout in spec.layouts if layout is None]
    devices = [p for layout in spec.layouts if layout is not None for p in layout]
    if spec.strategy == "none":
        resources["nvidia.com/gpu"] = str(spec.gpus)
    elif spec.strategy == "mixed":
        if whole:
            resources["nvidia.com/gpu"] = str(len(whole))
        counts = Counter(p.name for p in devices)
        for profile in {p.name: p for p in devices}.values():
            prefix = f"nvidia.com/mig-{profile.k8s_name}"
            resources[profile.resource] = str(counts[profile.name])
            labels[f"{prefix}.count"] = str(counts[profile.name])
            labels[f"{prefix}.slices.gi"] = str(profile.compute_slices)
            labels[f"{prefix}.slices.ci"] = str(profile.compute_slices)
            labels[f"{prefix}.product"] = f"{product}-MIG-{profile.k8s_name}"
            labels[f"{prefix}.replicas"] = "1"
            labels[f"{prefix}.sharing-strategy"] = "none"
            if profile.memory_mib:
                labels[f"{prefix}.memory"] = str(profile.memory_mib)
            if profile.sm_count:
                labels[f"{prefix}.multiprocessors"] = str(profile.sm_count)
    elif len(whole) == spec.gpus:  # single strategy, MIG disabled everywhere: whole GPUs
        resources["nvidia.com/gpu"] = str(spec.gpus)
    else:
        kinds = {p.name for p in devices}
        if whole or len(kinds) != 1:
            labels["nvidia.com/gpu.product"] = f"{product}-MIG-INVALID"
            labels["nvidia.com/gpu.count"] = "0"
            resources["nvidia.com/gpu"] = "0"
        else:
            profile = devices[0]
            labels["nvidia.com/gpu.product"] = f"{product}-MIG-{profile.k8s_name}"
            labels["nvidia.com/gpu.count"] = str(len(devices))
            labels["nvidia.com/gpu.slices.gi"] = str(profile.compute_slices)
            labels["nvidia.com/gpu.slices.ci"] = str(profile.compute_slices)
            if profile.memory_mib:
                labels["nvidia.com/gpu.memory"] = str(profile.memory_mib)
            if profile.sm_count:
                labels["nvidia.com/gpu.multiprocessors"] = str(profile.sm_count)
            resources["nvidia.com/gpu"] = str(len(devices))
    return labels, resources


def node_object(spec: NodeSpec, internal_ip: str | None = None) -> dict[str, Any]:
    """The Node as the API would return it, before server-set metadata."""
    gpu_labels, gpu_resources = gpu_labels_and_resources(spec)
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        **gpu_labels,
        **spec.labels,
    }
    capacity = {
        "cpu": spec.cpu,
        "memory": spec.memory,
        "pods": spec.pods,
        "ephemeral-storage": spec.ephemeral_storage,
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        **gpu_resources,
    }
    addresses = [{"type": "Hostname", "address": spec.name}]
    if internal_ip:
        addresses.insert(0, {"type": "InternalIP", "address": internal_ip})
    ready = {
        "type": "Ready",
        "status": "True" if spec.ready else "False",
        "reason": "KubeletReady" if spec.ready else "KubeletNotReady",
        "message": "kubelet is posting ready status" if spec.ready else "container runtime is down",
    }
    conditions = [
        {
            "type": "MemoryPressure",
            "status": "False",
            "reason": "KubeletHasSufficientMemory",
            "message": "kubelet has sufficient memory available",
        },
        {
            "type": "DiskPressure",
            "status": "False",
            "reason": "KubeletHasNoDiskPressure",
            "message": "kubelet has no disk pressure",
        },
        {
            "type": "PIDPressure",
            "status": "False",
            "reason": "KubeletHasSufficientPID",
            "message": "kubelet has sufficient PID available",
        },
        ready,
    ]
    stamp = now()
    for condition in conditions:
        condition.update(lastHeartbeatTime=stamp, lastTransitionTime=stamp)
    node_spec: dict[str, Any] = {}
    if spec.unschedulable:
        node_spec["unschedulable"] = True
    if spec.taints:
        node_spec["taints"] = [dict(t) for t in spec.taints]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", **spec.annotations},
        },
        "spec": node_spec,
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": conditions,
            "addresses": addresses,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "osImage": "Emulated Linux",
                "kernelVersion": "6.1.0-emulated",
                "containerRuntimeVersion": "emulated://1.0.0",
                "kubeletVersion": "v1.31.0-emulated",
                "kubeProxyVersion": "v1.31.0-emulated",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }
