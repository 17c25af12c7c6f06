"""The real Kueue (``make k8s``) admits our pods on the real control plane (issue 22).

Kueue's plain-Pod integration: a pod labeled with a LocalQueue, in a namespace Kueue
manages, gets Kueue's scheduling gate; its Workload is admitted against the ClusterQueue's
quota of MIG slices, and then the gate goes and the scheduler places it on a node the
node agent runs. The fixtures are tests/kueue_harness.py's.
"""

from __future__ import annotations

from kueue_harness import GATE, NAMESPACE, QUEUE_LABEL, condition

H100 = "NVIDIA-H100-80GB-HBM3"
SLICE = "nvidia.com/mig-1g.10gb"
NODES = {"nodes": [{"name": "kueue-1", "gpu": H100, "strategy": "mixed", "mig": [["1g.10gb"] * 7]}]}


def pod(name: str, queue: str, slices: int = 1) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {QUEUE_LABEL: queue}},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "quay.io/jupyter/base-notebook",
                    "resources": {"limits": {SLICE: str(slices)}},
                }
            ],
        },
    }


def test_a_queued_pod_is_gated_admitted_then_scheduled(kueue_queues, real_cluster):
    cluster = real_cluster(NODES)
    kueue = kueue_queues
    kueue.resource_flavor("mig")
    kueue.cluster_queue("gpus", {"mig": {SLICE: 2}})
    kueue.local_queue("team", "gpus")
    created = cluster.create_pod(pod("nb-1", "team"), NAMESPACE)
    assert {"name": GATE} in created["spec"].get("schedulingGates", [])
    workload = kueue.wait_admitted("nb-1")
    assert condition(workload, "QuotaReserved")["status"] == "True"
    (assignment,) = workload["status"]["admission"]["podSetAssignments"]
    assert assignment["flavors"] == {SLICE: "mig"}
    running = cluster.wait_for(
        lambda c: (p := c.pod("nb-1", NAMESPACE)) and p["status"].get("phase") == "Running" and p,
        what="nb-1 running",
    )
    assert not running["spec"].get("schedulingGates")
    assert running["spec"]["nodeName"] == "kueue-1"
