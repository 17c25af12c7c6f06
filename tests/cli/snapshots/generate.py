"""Writes the snapshot fixtures of tests/cli: ``python tests/cli/snapshots/generate.py``.

Each file is what ``kubectl get nodes,pods -A -o json`` prints for a small but realistic
GPU cluster: Nodes carry the labels NVIDIA GPU Feature Discovery writes (per-profile
``nvidia.com/mig-<profile>.*`` labels under the mixed strategy, a ``-MIG-<profile>``
product label under the single strategy) with figures from mig-spawner's catalog; Pods
are hub-spawned notebooks (KubeSpawner's and mig-spawner's labels), other teams' batch
jobs in their own namespaces, and GPU-less system daemons. ``test_snapshot_files.py``
checks that the committed files match this script.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from mig_spawner.core.catalog import default_catalog  # noqa: E402
from mig_spawner.core.pods import hub_marks  # noqa: E402

H100 = "NVIDIA-H100-80GB-HBM3"
A100_40 = "NVIDIA-A100-SXM4-40GB"
CREATED = "2026-11-20T08:00:00Z"
STARTED = "2026-11-20T09:30:00Z"
GPU_INFO = {
    H100: {"family": "hopper", "major": "9", "minor": "0", "machine": "a3-highgpu-1g"},
    A100_40: {"family": "ampere", "major": "8", "minor": "0", "machine": "a2-highgpu-1g"},
}


def octet(name: str) -> int:
    """A stable small number per name, for made-up IP addresses."""
    return sum(map(ord, name)) % 250


def uid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "mig-spawner-tests/" + "/".join(parts)))


def gpu_node(
    name: str,
    product: str,
    *,
    gpus: int,
    mig: dict[str, int] | None = None,
    strategy: str = "mixed",
    whole_gpus: int = 0,
    mig_config: str = "custom",
    zone: str = "us-central1-a",
) -> dict:
    """A GPU node as the API returns it, with GPU Feature Discovery's labels."""
    model = default_catalog().model_for_product(product)
    info = GPU_INFO[product]
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": info["machine"],
        "topology.kubernetes.io/region": zone.rsplit("-", 1)[0],
        "topology.kubernetes.io/zone": zone,
        "feature.node.kubernetes.io/pci-10de.present": "true",
        "nvidia.com/cuda.driver.major": "550",
        "nvidia.com/cuda.driver.minor": "127",
        "nvidia.com/cuda.driver.rev": "08",
        "nvidia.com/cuda.runtime.major": "12",
        "nvidia.com/cuda.runtime.minor": "4",
        "nvidia.com/gfd.timestamp": "1763629200",
        "nvidia.com/gpu.compute.major": info["major"],
        "nvidia.com/gpu.compute.minor": info["minor"],
        "nvidia.com/gpu.count": str(gpus),
        "nvidia.com/gpu.deploy.device-plugin": "true",
        "nvidia.com/gpu.deploy.gpu-feature-discovery": "true",
        "nvidia.com/gpu.deploy.mig-manager": "true",
        "nvidia.com/gpu.family": info["family"],
        "nvidia.com/gpu.machine": info["machine"],
        "nvidia.com/gpu.memory": str(model.memory_mib),
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none",
        "nvidia.com/mig.capable": "true",
        "nvidia.com/mig.config": mig_config,
        "nvidia.com/mig.config.state": "success",
        "nvidia.com/mig.strategy": strategy,
    }
    allocatable = {
        "cpu": "11",
        "ephemeral-storage": "94998384074",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": "174025788Ki",
        "pods": "110",
    }
    mig = mig or {}
    if strategy == "mixed":
        for profile, count in mig.items():
            p = model.profile(profile)
            k8s = p.k8s_name
            allocatable[f"nvidia.com/mig-{k8s}"] = str(count)
            prefix = f"nvidia.com/mig-{k8s}"
            labels.update(
                {
                    f"{prefix}.count": str(count),
                    f"{prefix}.engines.copy": str(p.compute_slices),
                    f"{prefix}.engines.decoder": str(p.compute_slices),
                    f"{prefix}.memory": str(p.memory_mib),
                    f"{prefix}.multiprocessors": str(p.sm_count),
                    f"{prefix}.product": f"{product}-MIG-{k8s}",
                    f"{prefix}.replicas": "1",
                    f"{prefix}.sharing-strategy": "none",
                    f"{prefix}.slices.ci": str(p.compute_slices),
                    f"{prefix}.slices.gi": str(p.compute_slices),
                }
            )
        if whole_gpus:
            allocatable["nvidia.com/gpu"] = str(whole_gpus)
    elif mig:  # single strategy: one profile per node, exposed as nvidia.com/gpu
        ((profile, count),) = mig.items()
        p = model.profile(profile)
        labels.update(
            {
                "nvidia.com/gpu.product": f"{product}-MIG-{p.k8s_name}",
                "nvidia.com/gpu.count": str(count),
                "nvidia.com/gpu.memory": str(p.memory_mib),
                "nvidia.com/gpu.multiprocessors": str(p.sm_count),
                "nvidia.com/gpu.slices.ci": str(p.compute_slices),
                "nvidia.com/gpu.slices.gi": str(p.compute_slices),
                "nvidia.com/gpu.engines.copy": str(p.compute_slices),
            }
        )
        allocatable["nvidia.com/gpu"] = str(count)
    else:  # single strategy with MIG disabled: whole GPUs
        labels["nvidia.com/mig.config"] = "all-disabled"
        allocatable["nvidia.com/gpu"] = str(whole_gpus)
    capacity = dict(
        allocatable, cpu="12", memory="176174652Ki", **{"ephemeral-storage": "101430960Ki"}
    )
    heartbeat = "2026-11-20T10:14:52Z"
    conditions = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady"),
    ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "nfd.node.kubernetes.io/feature-labels": "pci-10de.present",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
            "creationTimestamp": CREATED,
            "labels": dict(sorted(labels.items())),
            "name": name,
            "resourceVersion": str(100000 + sum(map(ord, name))),
            "uid": uid("node", name),
        },
        "spec": {
            "podCIDR": f"10.8.{octet(name)}.0/24",
            "providerID": f"gce://gpu-lab/{zone}/{name}",
        },
        "status": {
            "addresses": [
                {"address": f"10.128.0.{octet(name)}", "type": "InternalIP"},
                {"address": name, "type": "Hostname"},
            ],
            "allocatable": allocatable,
            "capacity": capacity,
            "conditions": [
                {
                    "lastHeartbeatTime": heartbeat,
                    "lastTransitionTime": CREATED,
                    "message": "kubelet is posting ready status" if t == "Ready" else reason,
                    "reason": reason,
                    "status": status,
                    "type": t,
                }
                for t, status, reason in conditions
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": uid("boot", name),
                "containerRuntimeVersion": "containerd://1.7.24",
                "kernelVersion": "6.1.112+",
                "kubeProxyVersion": "v1.31.4",
                "kubeletVersion": "v1.31.4",
                "machineID": uid("machine", name).replace("-", ""),
                "operatingSystem": "linux",
                "osImage": "Ubuntu 22.04.5 LTS",
                "systemUUID": uid("system", name),
            },
        },
    }


def _pod(
    namespace: str,
    name: str,
    *,
    node: str | None,
    containers: list[dict],
    labels: dict | None = None,
    annotations: dict | None = None,
    phase: str | None = None,
    owner: tuple[str, str] | None = None,
    tolerations: list[dict] | None = None,
) -> dict:
    phase = phase or ("Running" if node else "Pending")
    meta: dict = {
        "creationTimestamp": STARTED,
        "labels": labels or {},
        "name": name,
        "namespace": namespace,
        "resourceVersion": str(200000 + sum(map(ord, namespace + name))),
        "uid": uid("pod", namespace, name),
    }
    if annotations:
        meta["annotations"] = annotations
    if owner:
        kind, owner_name = owner
        meta["ownerReferences"] = [
            {
                "apiVersion": "batch/v1" if kind == "Job" else "apps/v1",
                "blockOwnerDeletion": True,
                "controller": True,
                "kind": kind,
                "name": owner_name,
                "uid": uid(kind, namespace, owner_name),
            }
        ]
    spec: dict = {
        "containers": containers,
        "dnsPolicy": "ClusterFirst",
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0,
        "restartPolicy": "OnFailure" if owner and owner[0] == "Job" else "Always",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
        "tolerations": (tolerations or [])
        + [
            {
                "effect": "NoExecute",
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "tolerationSeconds": 300,
            },
            {
                "effect": "NoExecute",
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "tolerationSeconds": 300,
            },
        ],
    }
    status: dict = {"phase": phase, "qosClass": "Burstable"}
    if node:
        spec["nodeName"] = node
        status.update(
            {
                "hostIP": f"10.128.0.{octet(node)}",
                "podIP": f"10.8.{octet(node)}.{octet(name)}",
                "startTime": STARTED,
                "conditions": [
                    {"lastTransitionTime": STARTED, "status": "True", "type": "PodScheduled"},
                    {
                        "lastTransitionTime": STARTED,
                        "status": "True" if phase == "Running" else "False",
                        "type": "Ready",
                    },
                ],
            }
        )
    else:
        status["conditions"] = [
            {
                "lastProbeTime": None,
                "lastTransitionTime": STARTED,
                "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
                "reason": "Unschedulable",
                "status": "False",
                "type": "PodScheduled",
            }
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def _gpu_container(name: str, image: str, resource: str, count: int = 1) -> dict:
    return {
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "name": name,
        "resources": {
            "limits": {"cpu": "4", "memory": "16Gi", resource: str(count)},
            "requests": {"cpu": "1", "memory": "4Gi", resource: str(count)},
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def notebook(
    user: str,
    *,
    team: str,
    tier: str,
    profile: str,
    resource: str,
    node: str | None,
    product: str = H100,
    requested: str = "",
    pinned: str = "",
    server: str = "",
    phase: str | None = None,
) -> dict:
    """A single-user server mig-spawner started through KubeSpawner (marked as it marks them)."""
    name = f"jupyter-{user}" + (f"--{server}" if server else "")
    labels = {
        "app": "jupyterhub",
        "app.kubernetes.io/component": "singleuser-server",
        "app.kubernetes.io/instance": "jupyterhub",
        "app.kubernetes.io/managed-by": "kubespawner",
        "app.kubernetes.io/name": "jupyterhub",
        "chart": "jupyterhub-4.1.0",
        "component": "singleuser-server",
        "heritage": "jupyterhub",
        "hub.jupyter.org/network-access-hub": "true",
        "hub.jupyter.org/servername": server,
        "hub.jupyter.org/username": user,
        "release": "jupyterhub",
    }
    marks, notes = hub_marks(
        hub="jupyterhub",
        user=user,
        team=team,
        tier=tier,
        requested_profile=requested or profile,
        granted_profile=profile,
        granted_product=product,
        charge_mode="requested" if requested else "granted",
        node=node or pinned,
    )
    labels.update(marks)
    annotations = {
        "hub.jupyter.org/servername": server,
        "hub.jupyter.org/username": user,
        **notes,
    }
    container = _gpu_container(
        "notebook", "quay.io/jupyter/pytorch-notebook:cuda12-2024-12-09", resource
    )
    container["args"] = ["jupyterhub-singleuser"]
    container["ports"] = [{"containerPort": 8888, "name": "notebook-port", "protocol": "TCP"}]
    return _pod(
        "jupyterhub",
        name,
        node=node,
        containers=[container],
        labels=labels,
        annotations=annotations,
        phase=phase,
    )


def batch(namespace: str, job: str, index: int, *, node: str | None, resource: str, phase=None):
    """A pod of another team's Job, outside the hub's namespace."""
    name = f"{job}-{index}-{uid(job, str(index))[:5]}"
    labels = {
        "batch.kubernetes.io/controller-uid": uid("Job", namespace, job),
        "batch.kubernetes.io/job-name": job,
        "job-name": job,
        "batch.kubernetes.io/job-completion-index": str(index),
    }
    container = _gpu_container("train", "nvcr.io/nvidia/pytorch:24.10-py3", resource)
    container["command"] = ["python", "train.py", f"--shard={index}"]
    return _pod(
        namespace,
        name,
        node=node,
        containers=[container],
        labels=labels,
        phase=phase,
        owner=("Job", job),
    )


def daemon(namespace: str, ds: str, node: str, image: str) -> dict:
    """A GPU-less DaemonSet pod (device plugin, GFD, DCGM exporter...)."""
    name = f"{ds}-{uid(ds, node)[:5]}"
    container = {
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "name": ds,
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
    }
    return _pod(
        namespace,
        name,
        node=node,
        containers=[container],
        labels={"app": ds, "controller-revision-hash": "6d4f8b9c7", "pod-template-generation": "1"},
        owner=("DaemonSet", ds),
        tolerations=[{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}],
    )


def system_pods(nodes: list[dict]) -> list[dict]:
    out = []
    for n in nodes:
        name = n["metadata"]["name"]
        out.append(
            daemon(
                "gpu-operator",
                "nvidia-device-plugin-daemonset",
                name,
                "nvcr.io/nvidia/k8s-device-plugin:v0.17.0",
            )
        )
        out.append(daemon("kube-system", "kube-proxy", name, "registry.k8s.io/kube-proxy:v1.31.4"))
    return out


def as_list(nodes: list[dict], pods: list[dict]) -> dict:
    """What `kubectl get nodes,pods -A -o json` prints: one List, Nodes first."""
    return {
        "apiVersion": "v1",
        "items": [*nodes, *pods],
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    }


MIG1 = "nvidia.com/mig-1g.10gb"


def mixed_h100() -> dict:
    """Mixed strategy, three H100 nodes. 1g.10gb is full: 2 notebooks + 5 batch pods."""
    nodes = [
        gpu_node("gke-lab-h100-a", H100, gpus=1, mig={"1g.10gb": 7}, mig_config="all-1g.10gb"),
        gpu_node("gke-lab-h100-b", H100, gpus=1, mig={"2g.20gb": 2, "3g.40gb": 1}),
        gpu_node("gke-lab-h100-c", H100, gpus=2, mig={"7g.80gb": 1}, whole_gpus=1),
    ]
    pods = [
        notebook(
            "alice",
            team="vision",
            tier="notebook",
            profile="1g.10gb",
            resource=MIG1,
            node="gke-lab-h100-a",
        ),
        notebook(
            "carol",
            team="nlp",
            tier="notebook",
            profile="1g.10gb",
            resource=MIG1,
            node="gke-lab-h100-a",
            server="eda",
        ),
        notebook(
            "bob",
            team="vision",
            tier="training",
            profile="3g.40gb",
            resource="nvidia.com/mig-3g.40gb",
            node="gke-lab-h100-b",
        ),
        *[batch("ml-batch", "sweep-lr", i, node="gke-lab-h100-a", resource=MIG1) for i in range(5)],
        # Finished and unscheduled pods hold no slice.
        batch("ml-batch", "sweep-lr", 5, node="gke-lab-h100-a", resource=MIG1, phase="Succeeded"),
        batch("research", "eval-70b", 0, node=None, resource="nvidia.com/mig-7g.80gb"),
        *system_pods(nodes),
    ]
    return as_list(nodes, pods)


def single_h100() -> dict:
    """Single strategy: a 1g.10gb node, a 3g.40gb node and a node with MIG disabled."""
    nodes = [
        gpu_node(
            "h100-single-1g",
            H100,
            gpus=2,
            strategy="single",
            mig={"1g.10gb": 14},
            mig_config="all-1g.10gb",
        ),
        gpu_node(
            "h100-single-3g",
            H100,
            gpus=2,
            strategy="single",
            mig={"3g.40gb": 4},
            mig_config="all-3g.40gb",
        ),
        gpu_node("h100-single-whole", H100, gpus=1, strategy="single", whole_gpus=1),
    ]
    gpu = "nvidia.com/gpu"
    pods = [
        notebook(
            "bob",
            team="vision",
            tier="training",
            profile="3g.40gb",
            resource=gpu,
            node="h100-single-3g",
        ),
        *[batch("ml-batch", "tune", i, node="h100-single-1g", resource=gpu) for i in range(3)],
        *system_pods(nodes),
    ]
    return as_list(nodes, pods)


def multi_model() -> dict:
    """A100-40GB and H100 nodes (mixed). Every 1g.10gb, on either model, is taken."""
    nodes = [
        gpu_node("a100-pool-1", A100_40, gpus=1, mig={"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}),
        gpu_node("a100-pool-2", A100_40, gpus=1, mig={"1g.10gb": 4}, mig_config="all-1g.10gb"),
        gpu_node("h100-pool-1", H100, gpus=1, mig={"1g.10gb": 7}, mig_config="all-1g.10gb"),
        gpu_node("h100-pool-2", H100, gpus=1, mig={"3g.40gb": 2}, mig_config="all-3g.40gb"),
    ]
    pods = [
        *[batch("research", "ablation", i, node="a100-pool-2", resource=MIG1) for i in range(4)],
        notebook(
            "alice",
            team="vision",
            tier="notebook",
            profile="1g.10gb",
            resource=MIG1,
            node="h100-pool-1",
        ),
        notebook(
            "bob",
            team="vision",
            tier="notebook",
            profile="1g.10gb",
            resource=MIG1,
            node="h100-pool-1",
        ),
        notebook(
            "carol",
            team="nlp",
            tier="notebook",
            profile="1g.10gb",
            resource=MIG1,
            node="h100-pool-1",
        ),
        notebook(
            "dave",
            team="nlp",
            tier="notebook",
            profile="1g.10gb",
            resource=MIG1,
            node="h100-pool-1",
        ),
        *[batch("ml-batch", "distill", i, node="h100-pool-1", resource=MIG1) for i in range(3)],
        *system_pods(nodes),
    ]
    return as_list(nodes, pods)


SNAPSHOTS = {
    "mixed-h100.json": mixed_h100,
    "single-h100.json": single_h100,
    "multi-model.json": multi_model,
}


def render(build) -> str:
    return json.dumps(build(), indent=4) + "\n"


if __name__ == "__main__":
    for filename, build in SNAPSHOTS.items():
        (HERE / filename).write_text(render(build))
        print("wrote", HERE / filename)
