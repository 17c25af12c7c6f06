"""The real Kueue (``make k8s``) admits our pods on the real control plane (issue 22).

Kueue's plain-Pod integration: a pod labeled with a LocalQueue, in a namespace Kueue
manages, gets Kueue's scheduling gate; its Workload is admitted against the ClusterQueue's
quota of MIG slices, and then the gate goes and the scheduler places it on a node the
node agent runs. A batch Job holding the whole quota keeps a pod waiting, in Kueue's words
and in its visibility API (through the API server's aggregator), until the Job goes; a
cohort lends one queue's unused quota to another. The fixtures are tests/kueue_harness.py's.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest
from kueue_harness import GATE, NAMESPACE, QUEUE_LABEL, condition, require_kueue

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


def job(name: str, queue: str, pods: int) -> dict:
    """A batch Job of ``pods`` pods, one slice each, in the queue (Kueue suspends it until
    its Workload is admitted). Its pods stop at once when it is deleted: Kueue keeps the
    quota until they are gone, and the node agent's stub containers would sit out the
    default 30 s grace period."""
    template = pod("unused", queue)
    template["metadata"] = {}
    template["spec"]["restartPolicy"] = "Never"
    template["spec"]["terminationGracePeriodSeconds"] = 0
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {QUEUE_LABEL: queue}},
        "spec": {"parallelism": pods, "completions": pods, "template": template},
    }


def running(cluster, name: str) -> dict:
    def check(c):
        p = c.pod(name, NAMESPACE)
        return p if p and p["status"].get("phase") == "Running" else None

    return cluster.wait_for(check, timeout=60, what=f"{name} running")


def test_a_job_holding_the_quota_keeps_a_pod_waiting_in_line_until_it_goes(
    kueue_queues, real_cluster
):
    cluster = real_cluster(NODES)
    kueue = kueue_queues
    kueue.resource_flavor("mig")
    kueue.cluster_queue("gpus", {"mig": {SLICE: 2}})
    kueue.local_queue("team", "gpus")
    training = kueue.create(job("training", "team", pods=2))
    kueue.wait_admitted("training")
    cluster.wait_for(
        lambda c: (
            sum(
                p["status"].get("phase") == "Running"
                for p in c.pods
                if p["metadata"]["namespace"] == NAMESPACE
            )
            == 2
        ),
        timeout=60,
        what="the Job's two pods running",
    )
    cluster.create_pod(pod("nb-1", "team"), NAMESPACE)

    def refused():
        wl = kueue.workload_of("nb-1")
        reserved = condition(wl, "QuotaReserved") if wl else {}
        return wl if reserved.get("status") == "False" and reserved.get("message") else None

    waiting = kueue.wait("nb-1's Workload refused quota", refused)
    message = condition(waiting, "QuotaReserved")["message"]
    assert message == (
        "couldn't assign flavors to pod set main: "
        f"insufficient unused quota for {SLICE} in flavor mig, 1 more needed"
    )
    assert condition(waiting, "Admitted").get("status") != "True"
    (pending,) = kueue.wait("nb-1 in the visibility API", lambda: kueue.pending_workloads("team"))
    assert pending["metadata"]["name"] == waiting["metadata"]["name"]
    assert pending["localQueueName"] == "team"
    assert (pending["positionInClusterQueue"], pending["positionInLocalQueue"]) == (0, 0)
    assert {"name": GATE} in cluster.pod("nb-1", NAMESPACE)["spec"]["schedulingGates"]

    kueue.delete(training)
    admitted = kueue.wait_admitted("nb-1")
    assert admitted["status"]["admission"]["clusterQueue"] == "gpus"
    assert running(cluster, "nb-1")["spec"]["nodeName"] == "kueue-1"
    assert kueue.pending_workloads("team") == []


def test_deleting_a_waiting_pod_removes_its_workload(kueue_queues, real_cluster):
    cluster = real_cluster(NODES)
    kueue = kueue_queues
    kueue.resource_flavor("mig")
    kueue.cluster_queue("gpus", {"mig": {SLICE: 1}})
    kueue.local_queue("team", "gpus")
    cluster.create_pod(pod("nb-1", "team"), NAMESPACE)
    kueue.wait_admitted("nb-1")
    cluster.create_pod(pod("nb-2", "team"), NAMESPACE)
    waiting = kueue.wait_workload("nb-2")
    kueue.wait("nb-2 pending in the visibility API", lambda: kueue.pending_workloads("team"))
    cluster.delete_pod("nb-2", NAMESPACE)
    kueue.wait("nb-2 gone", lambda: cluster.pod("nb-2", NAMESPACE) is None)
    names = lambda: {w["metadata"]["name"] for w in kueue.workloads()}  # noqa: E731
    kueue.wait("nb-2's Workload gone", lambda: waiting["metadata"]["name"] not in names())
    assert kueue.pending_workloads("team") == []
    assert kueue.workload_of("nb-1") is not None  # the admitted one stays


def test_a_cohort_lends_one_queues_unused_quota_to_another(kueue_queues, real_cluster):
    cluster = real_cluster(NODES)
    kueue = kueue_queues
    kueue.resource_flavor("mig")
    kueue.cluster_queue("lender", {"mig": {SLICE: 2}}, cohort="shared")
    kueue.cluster_queue("borrower", {"mig": {SLICE: 0}}, cohort="shared")
    kueue.local_queue("borrow", "borrower")
    cluster.create_pod(pod("nb-1", "borrow"), NAMESPACE)
    admitted = kueue.wait_admitted("nb-1")
    assert admitted["status"]["admission"]["clusterQueue"] == "borrower"
    assert running(cluster, "nb-1")["spec"]["nodeName"] == "kueue-1"

    def borrowed():
        cq = kueue.plane.get("/apis/kueue.x-k8s.io/v1beta2/clusterqueues/borrower") or {}
        for flavor in (cq.get("status") or {}).get("flavorsReservation") or []:
            for resource in flavor["resources"]:
                if resource["name"] == SLICE and resource.get("borrowed") == "1":
                    return resource
        return None

    assert kueue.wait("the borrower's status to show 1 slice borrowed", borrowed)["total"] == "1"
    # read in Kueue's older version, through its conversion webhook: v1beta2's cohortName
    # was v1beta1's cohort
    old = kueue.plane.get("/apis/kueue.x-k8s.io/v1beta1/clusterqueues/borrower")
    assert old["apiVersion"] == "kueue.x-k8s.io/v1beta1" and old["spec"]["cohort"] == "shared"


def test_namespaces_kueue_does_not_manage_never_meet_it(kueue, real_cluster):
    """The rest of the suite shares the session's control plane with Kueue: a pod elsewhere,
    even one naming a queue, is neither gated nor given a Workload."""
    cluster = real_cluster(NODES)
    created = cluster.create_pod(pod("nb-elsewhere", "team"), "jhub")
    assert not created["spec"].get("schedulingGates")
    placed = cluster.wait_for(
        lambda c: (c.pod("nb-elsewhere", "jhub") or {}).get("spec", {}).get("nodeName"),
        what="nb-elsewhere scheduled",
    )
    assert placed == "kueue-1"
    assert kueue.workloads("jhub") == []


def test_a_hub_in_the_managed_namespace_reads_its_queue_line(kueue_queues, real_cluster):
    """The hub's ServiceAccount there may read Workloads and, through the aggregator, the
    visibility API's pending workloads (Kueue's batch-user role), both of its versions."""
    cluster = real_cluster(NODES)
    kueue = kueue_queues
    kueue.resource_flavor("mig")
    kueue.cluster_queue("gpus", {"mig": {SLICE: 0}})
    kueue.local_queue("team", "gpus")
    cluster.create_pod(pod("nb-1", "team"), NAMESPACE)
    kueue.wait("nb-1 pending", lambda: kueue.pending_workloads("team"))
    token = kueue.plane.service_account_token(NAMESPACE, "hub")
    ctx = ssl.create_default_context(cafile=str(kueue.plane.ca))

    def get(path: str) -> dict:
        request = urllib.request.Request(kueue.plane.url + path)
        request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, context=ctx, timeout=10) as response:
            return json.loads(response.read())

    (workload,) = get(f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{NAMESPACE}/workloads")["items"]
    for version in ("v1beta2", "v1beta1"):
        lq = f"/apis/visibility.kueue.x-k8s.io/{version}/namespaces/{NAMESPACE}/localqueues/team"
        (pending,) = get(f"{lq}/pendingworkloads")["items"]
        assert pending["metadata"]["name"] == workload["metadata"]["name"]
    with pytest.raises(urllib.error.HTTPError) as refused:  # not the cluster-wide view
        get("/apis/visibility.kueue.x-k8s.io/v1beta2/clusterqueues/gpus/pendingworkloads")
    assert refused.value.code == 403


def test_a_kueue_not_built_fails_the_test_naming_make_k8s(monkeypatch, tmp_path):
    monkeypatch.setenv("MIG_SPAWNER_K8S_CACHE", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match=r"kueue missing\): build it with `make k8s`"):
        require_kueue()
    monkeypatch.undo()
    assert require_kueue().name == "kueue"  # built: the fixture runs it
