"""The scheduler: fit by extended resources, selectors, affinity, taints, cordon, NotReady,
init containers, and kube-scheduler's FailedScheduling wording."""

from __future__ import annotations

import sys
from fractions import Fraction

from emu_helpers import make_pod, wait_phase

from mig_spawner.demo.emulator.scheduler import pod_requests

MIG_1G = "nvidia.com/mig-1g.10gb"
MIG_3G = "nvidia.com/mig-3g.40gb"


def create(cluster, body, namespace="default"):
    return cluster.store.create("pods", namespace, body)


async def unschedulable(cluster, name, namespace="default") -> str:
    """Wait for the pod's FailedScheduling event; return its message."""

    def failed(c):
        for event in reversed(c.events):
            if event["involvedObject"]["name"] == name and event["reason"] == "FailedScheduling":
                return event
        return None

    event = await cluster.wait_for(failed)
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "Pod"
    assert event["involvedObject"]["namespace"] == namespace
    # kube-scheduler records through events.k8s.io/v1: no source, a reportingComponent
    assert event["reportingComponent"] == "default-scheduler" and event["action"] == "Scheduling"
    assert event["eventTime"] and event["lastTimestamp"] is None
    pod = cluster.pod(name, namespace)
    assert pod["status"]["phase"] == "Pending" and "nodeName" not in pod["spec"]
    condition = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert condition["status"] == "False" and condition["reason"] == "Unschedulable"
    assert condition["message"] == event["message"]
    return event["message"]


async def test_binds_by_fit_and_reports_overfull_requests(emu):
    create(emu, make_pod("big-1", {MIG_3G: "1"}))
    pod = await wait_phase(emu, "big-1", "Running")
    assert pod["spec"]["nodeName"] == "gpu-h100-b"  # the only node with a 3g.40gb
    scheduled = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["status"] == "True"
    assert any(
        e["reason"] == "Scheduled"
        and e["message"] == "Successfully assigned default/big-1 to gpu-h100-b"
        for e in emu.events
    )
    create(emu, make_pod("big-2", {MIG_3G: "1"}))
    message = await unschedulable(emu, "big-2")
    assert message == "0/3 nodes are available: 3 Insufficient nvidia.com/mig-3g.40gb."
    # capacity frees up when the first pod goes: the pending pod is retried and bound
    emu.store.delete("pods", "default", "big-1", grace=0)
    pod = await wait_phase(emu, "big-2", "Running")
    assert pod["spec"]["nodeName"] == "gpu-h100-b"


async def test_mixed_reasons_are_counted_and_sorted(emu):
    for i in range(2):  # take h100-b's two 1g.10gb
        create(
            emu,
            make_pod(
                f"small-{i}", {MIG_1G: "1"}, nodeSelector={"kubernetes.io/hostname": "gpu-h100-b"}
            ),
        )
        await wait_phase(emu, f"small-{i}", "Running")
    emu.cordon("gpu-h100-a")
    create(emu, make_pod("one-more", {MIG_1G: "1"}))
    message = await unschedulable(emu, "one-more")
    assert message == (
        "0/3 nodes are available: 1 node(s) were unschedulable, "
        "2 Insufficient nvidia.com/mig-1g.10gb."
    )
    emu.uncordon("gpu-h100-a")
    pod = await wait_phase(emu, "one-more", "Running")
    assert pod["spec"]["nodeName"] == "gpu-h100-a"


async def test_node_selector_and_affinity(emu):
    create(emu, make_pod("pool", {MIG_1G: "1"}, nodeSelector={"node-pool": "a100"}))
    assert await unschedulable(emu, "pool") == (
        "0/3 nodes are available: 1 Insufficient nvidia.com/mig-1g.10gb, "
        "2 node(s) didn't match Pod's node affinity/selector."
    )
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "node-pool", "operator": "In", "values": ["h100"]},
                            {
                                "key": "kubernetes.io/hostname",
                                "operator": "NotIn",
                                "values": ["gpu-h100-a"],
                            },
                            {"key": "nvidia.com/mig.capable", "operator": "Exists"},
                        ]
                    },
                ]
            }
        }
    }
    create(emu, make_pod("affine", {MIG_1G: "1"}, affinity=affinity))
    assert (await wait_phase(emu, "affine", "Running"))["spec"]["nodeName"] == "gpu-h100-b"
    nowhere = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "node-pool", "operator": "DoesNotExist"}]}
                ]
            }
        }
    }
    create(emu, make_pod("nowhere", affinity=nowhere))
    assert await unschedulable(emu, "nowhere") == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    )


async def test_taints_tolerations_and_not_ready(make_emu):
    cluster = await make_emu(
        {
            "nodes": [
                {
                    "name": "tainted",
                    "gpu": "h100-80gb",
                    "mig": "all-1g.10gb",
                    "taints": [{"key": "dedicated", "value": "training", "effect": "NoSchedule"}],
                },
                {"name": "down", "gpu": "h100-80gb", "mig": "all-1g.10gb", "ready": False},
            ]
        }
    )
    create(cluster, make_pod("plain", {MIG_1G: "1"}))
    assert await unschedulable(cluster, "plain") == (
        "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: training}, "
        "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
    )
    # the node lifecycle controller shows the not-ready taint on the node
    taints = cluster.node("down")["spec"]["taints"]
    assert {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"} in taints
    toleration = {
        "key": "dedicated",
        "operator": "Equal",
        "value": "training",
        "effect": "NoSchedule",
    }
    create(cluster, make_pod("tolerant", {MIG_1G: "1"}, tolerations=[toleration]))
    assert (await wait_phase(cluster, "tolerant", "Running"))["spec"]["nodeName"] == "tainted"
    cluster.set_node_ready("down", True)
    pod = await wait_phase(cluster, "plain", "Running")
    assert pod["spec"]["nodeName"] == "down"
    assert "taints" not in cluster.node("down")["spec"]


def test_pod_requests_count_init_containers_as_kube_scheduler_does():
    pod = make_pod("p", {MIG_1G: "1", "cpu": "500m"}, init=[{MIG_1G: "2"}, {"cpu": "2"}])
    pod["spec"]["initContainers"].append(
        {
            "name": "sidecar",
            "image": "x",
            "restartPolicy": "Always",
            "resources": {"limits": {"memory": "1Gi"}},
        }
    )
    requests = pod_requests(pod)
    assert requests[MIG_1G] == 2  # max(sum of containers = 1, largest init = 2)
    assert requests["cpu"] == 2  # max(0.5, 2)
    assert requests["memory"] == Fraction(2**30)  # sidecars add to the sum


async def test_init_containers_hold_capacity_for_the_pods_lifetime(emu):
    # h100-b has two 1g.10gb; this pod needs max(1, 2) = 2 of them
    create(
        emu,
        make_pod(
            "init",
            {MIG_1G: "1"},
            init=[{MIG_1G: "2"}],
            nodeSelector={"kubernetes.io/hostname": "gpu-h100-b"},
        ),
    )
    pod = await wait_phase(emu, "init", "Running")
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    create(
        emu, make_pod("next", {MIG_1G: "1"}, nodeSelector={"kubernetes.io/hostname": "gpu-h100-b"})
    )
    assert await unschedulable(emu, "next") == (
        "0/3 nodes are available: 1 Insufficient nvidia.com/mig-1g.10gb, "
        "2 node(s) didn't match Pod's node affinity/selector."
    )
    create(emu, make_pod("too-big", init=[{MIG_1G: "8"}]))
    assert await unschedulable(emu, "too-big") == (
        "0/3 nodes are available: 3 Insufficient nvidia.com/mig-1g.10gb."
    )


async def test_every_namespace_and_terminating_pods_count(emu):
    create(emu, make_pod("elsewhere", {MIG_3G: "1"}), namespace="other")
    await wait_phase(emu, "elsewhere", "Running", ns="other")
    create(emu, make_pod("here", {MIG_3G: "1"}))
    await unschedulable(emu, "here")
    # a terminating pod still holds its devices until it is gone
    emu.store.mutate(
        "pods", "other", "elsewhere", lambda p: p["spec"].update(terminationGracePeriodSeconds=30)
    )
    emu.store.delete("pods", "other", "elsewhere", grace=30)
    assert emu.pod("elsewhere", "other")["metadata"]["deletionTimestamp"]
    await emu.wait_for(lambda c: c.pod("elsewhere", "other") is None)
    assert (await wait_phase(emu, "here", "Running"))["spec"]["nodeName"] == "gpu-h100-b"


async def test_finished_pods_free_their_devices(make_emu):
    cluster = await make_emu(
        {"nodes": [{"name": "n", "gpu": "h100-80gb", "mig": "all-3g.40gb"}]}, kubelet="process"
    )
    body = make_pod("done", {MIG_3G: "2"}, restartPolicy="Never")
    body["spec"]["containers"][0]["command"] = [sys.executable, "-c", "pass"]
    create(cluster, body)
    await wait_phase(cluster, "done", "Succeeded")
    create(
        cluster,
        make_pod(
            "after",
            {MIG_3G: "2"},
            restartPolicy="Never",
            args=[sys.executable, "-c", "import time; time.sleep(30)"],
        ),
    )
    assert (await wait_phase(cluster, "after", "Running"))["spec"]["nodeName"] == "n"


async def test_new_nodes_and_plain_resources(make_emu):
    cluster = await make_emu(None)
    create(cluster, make_pod("waiting", {MIG_1G: "1"}))
    assert await unschedulable(cluster, "waiting") == "no nodes available to schedule pods"
    cluster.add_node({"name": "small", "cpu": "1", "memory": "1Gi", "pods": "2"})
    create(cluster, make_pod("cpu-hog", {"cpu": "2", "memory": "2Gi"}))
    assert await unschedulable(cluster, "cpu-hog") == (
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
    )
    cluster.add_node({"name": "gpu", "gpu": "NVIDIA-H100-80GB-HBM3", "mig": "all-1g.10gb"})
    assert (await wait_phase(cluster, "waiting", "Running"))["spec"]["nodeName"] == "gpu"
    for i in range(2):
        create(cluster, make_pod(f"tiny-{i}", nodeSelector={"kubernetes.io/hostname": "small"}))
        await wait_phase(cluster, f"tiny-{i}", "Running")
    create(cluster, make_pod("tiny-2", nodeSelector={"kubernetes.io/hostname": "small"}))
    assert await unschedulable(cluster, "tiny-2") == (
        "0/2 nodes are available: 1 Too many pods, "
        "1 node(s) didn't match Pod's node affinity/selector."
    )
