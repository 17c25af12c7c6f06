"""Node and Pod dicts shaped exactly as the Kubernetes API returns them, for core tests.

Labels follow NVIDIA GPU Feature Discovery and the device plugin:
mixed strategy exposes ``nvidia.com/mig-<profile>`` with per-profile labels; single
strategy exposes ``nvidia.com/gpu`` and a ``-MIG-<profile>`` product label.
"""

from __future__ import annotations

from collections import Counter

from mig_spawner.core.cluster import ADDED, ClusterState
from mig_spawner.core.pods import hub_marks

# Per-profile memory (MiB) as GFD reports it on driver 550 (H100) and on GCP (A100-40GB).
MEMORY_MIB = {
    "1g.10gb": 9984,
    "1g.20gb": 19968,
    "2g.20gb": 20096,
    "3g.40gb": 40320,
    "4g.40gb": 40320,
    "7g.80gb": 80896,
    "1g.5gb": 4864,
    "2g.10gb": 9856,
    "3g.20gb": 19968,
    "7g.40gb": 40192,
}
SMS = {"1g.10gb": 16, "2g.20gb": 32, "3g.40gb": 60, "7g.80gb": 132, "1g.5gb": 14, "2g.10gb": 28}

H100 = "NVIDIA-H100-80GB-HBM3"
A100_40 = "NVIDIA-A100-SXM4-40GB"


def node(
    name: str,
    product: str = H100,
    *,
    mig: list[str] | None = None,
    strategy: str = "mixed",
    whole_gpus: int = 0,
    ready: bool = True,
    unschedulable: bool = False,
    taints: list[dict] | None = None,
    labels: dict | None = None,
) -> dict:
    """A GPU node. ``mig`` lists the MIG devices on the node (e.g. 7 × '1g.10gb')."""
    mig = mig or []
    all_labels = {
        "kubernetes.io/hostname": name,
        "nvidia.com/gpu.present": "true",
        "nvidia.com/mig.capable": "true",
        "nvidia.com/mig.strategy": strategy,
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.memory": "81559",
    }
    allocatable = {"cpu": "64", "memory": "512Gi", "pods": "110"}
    counts = Counter(mig)
    if strategy == "mixed":
        for profile, n in counts.items():
            k8s = profile.replace("+", ".")
            allocatable[f"nvidia.com/mig-{k8s}"] = str(n)
            all_labels[f"nvidia.com/mig-{k8s}.count"] = str(n)
            all_labels[f"nvidia.com/mig-{k8s}.product"] = f"{product}-MIG-{k8s}"
            if profile in MEMORY_MIB:
                all_labels[f"nvidia.com/mig-{k8s}.memory"] = str(MEMORY_MIB[profile])
            if profile in SMS:
                all_labels[f"nvidia.com/mig-{k8s}.multiprocessors"] = str(SMS[profile])
        if whole_gpus:
            allocatable["nvidia.com/gpu"] = str(whole_gpus)
    elif strategy == "single":
        if counts:
            (profile,) = counts  # single strategy: one profile per node
            all_labels["nvidia.com/gpu.product"] = f"{product}-MIG-{profile}"
            all_labels["nvidia.com/gpu.count"] = str(counts[profile])
            all_labels["nvidia.com/gpu.memory"] = str(MEMORY_MIB.get(profile, 0))
            allocatable["nvidia.com/gpu"] = str(counts[profile])
        else:
            all_labels["nvidia.com/mig.config"] = "all-disabled"
            allocatable["nvidia.com/gpu"] = str(whole_gpus)
    else:  # no MIG
        all_labels.pop("nvidia.com/mig.strategy")
        allocatable["nvidia.com/gpu"] = str(whole_gpus)
    all_labels.update(labels or {})
    spec: dict = {}
    if unschedulable:
        spec["unschedulable"] = True
    if taints:
        spec["taints"] = taints
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels, "resourceVersion": "1"},
        "spec": spec,
        "status": {
            "allocatable": allocatable,
            "capacity": dict(allocatable),
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(
    name: str,
    *,
    namespace: str = "jhub",
    node: str | None = None,
    resources: dict[str, int] | None = None,
    phase: str | None = None,
    user: str | None = None,
    team: str | None = None,
    server_name: str = "",
    init_resources: dict[str, int] | None = None,
    granted_profile: str = "",
    product: str = "",
    requested_profile: str = "",
    charge_mode: str = "granted",
    pinned: str = "",
    hub: str = "jupyterhub",
    tier: str = "",
) -> dict:
    """A pod; ``user``/``team`` make it one mig-spawner created (marked as the spawner does)."""
    labels: dict[str, str] = {}
    annotations = {"hub.jupyter.org/servername": server_name}
    if user is not None:
        granted = granted_profile or next(
            (r.removeprefix("nvidia.com/mig-") for r in resources or {} if "mig-" in r), ""
        )
        marks, notes = hub_marks(
            hub=hub,
            user=user,
            team=team or "",
            tier=tier,
            requested_profile=requested_profile or granted,
            granted_profile=granted,
            granted_product=product,
            charge_mode=charge_mode,
            node=pinned or node or "",
        )
        labels.update(marks)
        annotations.update(notes)
    limits = {k: str(v) for k, v in (resources or {}).items()}
    spec: dict = {"containers": [{"name": "notebook", "resources": {"limits": limits}}]}
    if init_resources:
        spec["initContainers"] = [
            {
                "name": "init",
                "resources": {"requests": {k: str(v) for k, v in init_resources.items()}},
            }
        ]
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
        "status": {"phase": phase or ("Running" if node else "Pending")},
    }


def state_with(*objs) -> ClusterState:
    """A cache fed these nodes and pods, as watch ADDED events."""
    state = ClusterState()
    for obj in objs:
        kind = "node" if obj["kind"] == "Node" else "pod"
        getattr(state, f"apply_{kind}_event")(ADDED, obj)
    return state
