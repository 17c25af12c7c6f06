"""Kueue mode through a real JupyterHub, with the real Kueue on the real control plane.

Kueue v0.17.0 (``make k8s``; the ``kueue_queues`` fixture of tests/kueue_harness.py)
manages the namespace ``jhub-kueue``, where the hub spawns with its ServiceAccount. A
notebook and a batch Job share one ClusterQueue: the notebook waits behind the Job, its
place and Kueue's reason in the progress, and starts when the Job goes; a ClusterQueue
without 1g quota left gives a 2g, saying why; a cancelled wait takes the pod and its
Workload along; an evicted notebook stops, Kueue's reason in the hub's log and on the
user's home page.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from hub_harness import H100, read_progress, spawn, stop, wait_ready
from jupyterhub.tests.utils import api_request, get_page
from kueue_harness import GATE, NAMESPACE, QUEUE_LABEL, condition

pytestmark = pytest.mark.hub

R1, R2 = "nvidia.com/mig-1g.10gb", "nvidia.com/mig-2g.20gb"
#: one H100: 4 × 1g.10gb, a 2g.20gb (and nothing else: 6 of 7 compute slices)
NODES = {
    "nodes": [
        {
            "name": "kq",
            "gpu": H100,
            "strategy": "mixed",
            "mig": [["1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "2g.20gb"]],
        }
    ]
}
TIERS = {
    "notebook": {
        "display_name": "1g notebook",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "max_compute_slices": 2,
        "max_wait": 120,
    }
}
TEAMS = {"vision": ["alice", "bob"]}
KUEUE = {"local_queues": {"vision": "team-vision"}}


async def kueue_hub(real_hub, **mig):
    settings = dict(tiers=TIERS, teams=TEAMS, team_quotas={}, kueue=KUEUE)
    settings.update(mig)
    app, cluster = await real_hub(spec=NODES, namespace=NAMESPACE, **settings)
    app.tornado_application.settings["slow_spawn_timeout"] = 0  # the POST answers at once
    return app, cluster


def batch_job(name: str, pods: int, resource: str = R1) -> dict:
    """A batch Job in the team's LocalQueue: ``pods`` pods of one slice each."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {QUEUE_LABEL: "team-vision"}},
        "spec": {
            "parallelism": pods,
            "completions": pods,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "train",
                            "image": "busybox",
                            "resources": {"limits": {resource: "1"}},
                        }
                    ],
                }
            },
        },
    }


def running_pods(cluster, prefix: str) -> list[dict]:
    return [
        p
        for p in cluster.pods
        if p["metadata"]["namespace"] == NAMESPACE
        and p["metadata"]["name"].startswith(prefix)
        and p["status"].get("phase") == "Running"
    ]


async def until(predicate, timeout: float = 60, what: str = ""):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {what} after {timeout} s")
        await asyncio.sleep(0.1)
    return value


def queues(kueue, quotas: dict) -> None:
    kueue.resource_flavor("mig")
    kueue.cluster_queue("team-vision", {"mig": quotas})
    kueue.local_queue("team-vision", "team-vision")


async def job_holding(kueue, cluster, pods: int, resource: str = R1) -> dict:
    job = kueue.create(batch_job("training", pods, resource))
    await asyncio.to_thread(kueue.wait_admitted, "training")
    await until(lambda: len(running_pods(cluster, "training")) == pods, what="the Job running")
    return job


async def test_a_notebook_waits_behind_a_batch_job_with_its_place_then_starts(
    kueue_queues, real_hub
):
    kueue = kueue_queues
    queues(kueue, {R1: 2, R2: 0})
    app, cluster = await kueue_hub(real_hub)
    job = await job_holding(kueue, cluster, pods=2)

    events: list[dict] = []
    r = await spawn(app, "alice", {"tier": "notebook"})
    assert r.status_code == 202, r.text
    reading = asyncio.ensure_future(read_progress(app, "alice", events, timeout=120))
    spawner = app.users["alice"].spawners[""]
    decision = await until(
        lambda: spawner.claim and spawner.claim.decision, what="alice's start decided"
    )
    # no quota left for any slice: the preferred one is asked of Kueue, which holds it
    assert decision.granted.profile == "1g.10gb"
    assert decision.message.startswith("Queued in Kueue for 1 × 1g.10gb")
    assert "ClusterQueue team-vision has 0 of 2 nvidia.com/mig-1g.10gb left" in decision.message
    # JupyterHub's start_timeout (60 s here) covers the whole start: the tier's max_wait on top
    assert spawner.start_timeout == 60 + 120

    kueue_said = (
        "couldn't assign flavors to pod set main: insufficient unused quota for"
        f" {R1} in flavor mig, 1 more needed"
    )
    line = f"#1 in line for 1g notebook (ClusterQueue team-vision): {kueue_said}"
    await until(lambda: line in [e.get("message") for e in events], what="the place shown")
    pod = cluster.pod("jupyter-alice", NAMESPACE)
    assert {"name": GATE} in pod["spec"]["schedulingGates"]
    assert pod["metadata"]["labels"][QUEUE_LABEL] == "team-vision"
    assert not spawner.ready

    kueue.delete(job)  # the batch job ends: Kueue admits the notebook
    await wait_ready(app, "alice", timeout=90)
    await reading
    assert events[-1].get("ready"), events[-1]
    wl = kueue.workload_of("jupyter-alice")
    assert condition(wl, "Admitted")["status"] == "True"
    assert wl["status"]["admission"]["clusterQueue"] == "team-vision"
    said = [e.get("message", "") for e in events]
    assert said.index(line) < len(said) - 1
    await stop(app, "alice")


async def test_no_1g_quota_left_falls_back_to_2g_and_says_so(kueue_queues, real_hub):
    kueue = kueue_queues
    queues(kueue, {R1: 1, R2: 1})
    app, cluster = await kueue_hub(real_hub)
    await job_holding(kueue, cluster, pods=1)
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob", timeout=90)
    decision = app.users["bob"].spawners[""].claim.decision
    assert decision.granted.profile == "2g.20gb" and decision.fallback
    assert decision.candidates[0].reason == (
        "ClusterQueue team-vision has 0 of 1 nvidia.com/mig-1g.10gb left"
    )
    assert decision.message.startswith("Starting on the larger 1 × 2g.20gb")
    pod = cluster.pod("jupyter-bob", NAMESPACE)
    assert pod["spec"]["containers"][0]["resources"]["limits"][R2] == "1"
    wl = await asyncio.to_thread(kueue.wait_admitted, "jupyter-bob")
    assert wl["status"]["admission"]["clusterQueue"] == "team-vision"
    # the hub's model shows what was granted and why (the REST API)
    r = await api_request(app, "users", "bob")
    mig = r.json()["servers"][""]["user_options"]["mig"]
    assert (mig["slice"], mig["requested"], mig["fallback"]) == ("2g.20gb", "1g.10gb", True)
    await stop(app, "bob")


async def test_cancelling_a_wait_removes_the_pod_and_its_workload(kueue_queues, real_hub):
    kueue = kueue_queues
    queues(kueue, {R1: 1, R2: 0})
    app, cluster = await kueue_hub(real_hub)
    await job_holding(kueue, cluster, pods=1)
    r = await spawn(app, "alice", {"tier": "notebook"})
    assert r.status_code == 202, r.text
    # the harness's waits sleep: in a thread, so that the hub's loop runs meanwhile
    await asyncio.to_thread(kueue.wait_workload, "jupyter-alice")
    await stop(app, "alice")  # stop while pending: JupyterHub cancels the start
    await until(lambda: cluster.pod("jupyter-alice", NAMESPACE) is None, what="the pod gone")
    await until(lambda: kueue.workload_of("jupyter-alice") is None, what="the Workload gone")


async def test_an_evicted_notebook_stops_with_kueues_reason_on_the_home_page(
    kueue_queues, real_hub, caplog
):
    """The ClusterQueue is stopped (HoldAndDrain): Kueue evicts the running notebook's
    Workload and stops its pod; the hub logs one line, the server stops, and the user's
    home page says why."""
    from traitlets.config import Config

    from mig_spawner.hub.homepage import install_home_page

    kueue = kueue_queues
    queues(kueue, {R1: 2, R2: 0})
    c = Config()
    install_home_page(c)
    extra = {
        "JupyterHub": {
            "template_paths": c.JupyterHub.template_paths,
            "template_vars": c.JupyterHub.template_vars,
        },
        "KubeSpawner": {"poll_interval": 1},
    }
    app, cluster = await kueue_hub(real_hub, extra=extra)
    r = await spawn(app, "alice", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "alice", timeout=90)
    cq = kueue.items("/apis/kueue.x-k8s.io/v1beta2/clusterqueues")[0]
    kueue.apply(
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ClusterQueue",
            "metadata": {"name": "team-vision"},
            "spec": {**cq["spec"], "stopPolicy": "HoldAndDrain"},
        }
    )
    spawner = app.users["alice"].spawners[""]
    await until(lambda: not spawner.active, timeout=90, what="alice's server stopped")
    assert cluster.pod("jupyter-alice", NAMESPACE) is None  # Kueue stopped it
    why = "ClusterQueueStopped: The ClusterQueue is stopped"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Kueue evicted")]
    assert lines == [f"Kueue evicted the server alice ({NAMESPACE}/jupyter-alice): {why}"]
    cookies = await app.login_user("alice")
    home = (await get_page("home", app, cookies=cookies)).text
    assert f"Your server was stopped: Kueue evicted it ({why})." in home


async def test_held_by_kueue_past_max_wait_the_pod_goes_and_the_start_is_refused(
    kueue_queues, real_hub
):
    kueue = kueue_queues
    queues(kueue, {R1: 1, R2: 0})
    tiers = {"notebook": {**TIERS["notebook"], "max_wait": 4}}
    app, cluster = await kueue_hub(real_hub, tiers=tiers)
    await job_holding(kueue, cluster, pods=1)
    events: list[dict] = []
    r = await spawn(app, "alice", {"tier": "notebook"})
    assert r.status_code == 202, r.text
    await read_progress(app, "alice", events, timeout=60)
    assert events[-1].get("failed"), events[-1]
    # the hub's own refusal, not JupyterHub's start_timeout (60 s + max_wait)
    assert re.search(
        r"Kueue did not admit it: waited [45] s, #1 in line; no 1g slice freed",
        events[-1]["message"],
    ), events[-1]
    assert "timeout" not in events[-1]["message"].lower()
    await until(lambda: cluster.pod("jupyter-alice", NAMESPACE) is None, what="the pod gone")
    await until(lambda: kueue.workload_of("jupyter-alice") is None, what="the Workload gone")


async def test_without_the_visibility_api_the_reason_shows_without_a_place(
    kueue_queues, real_hub, caplog
):
    """Kueue's visibility API not served (its APIService removed for the test, then put
    back): the progress shows Kueue's reason without a place, the hub logs one warning."""
    kueue = kueue_queues
    queues(kueue, {R1: 1, R2: 0})
    app, cluster = await kueue_hub(real_hub)
    await job_holding(kueue, cluster, pods=1)
    path = "/apis/apiregistration.k8s.io/v1/apiservices/v1beta2.visibility.kueue.x-k8s.io"
    saved = kueue.plane.get(path)
    assert saved is not None
    kueue.plane.request("DELETE", path)
    try:
        await until(
            lambda: kueue.plane.request("GET", "/apis/visibility.kueue.x-k8s.io/v1beta2")[0] == 404,
            what="the visibility API gone",
        )
        events: list[dict] = []
        r = await spawn(app, "alice", {"tier": "notebook"})
        assert r.status_code == 202, r.text
        reading = asyncio.ensure_future(read_progress(app, "alice", events, timeout=120))
        line = (
            "Waiting in Kueue's queue for 1g notebook (ClusterQueue team-vision):"
            " couldn't assign flavors to pod set main: insufficient unused quota for"
            f" {R1} in flavor mig, 1 more needed"
        )
        await until(lambda: line in [e.get("message") for e in events], what="the reason shown")
        warned = [
            r.getMessage()
            for r in caplog.records
            if "visibility API (visibility.kueue.x-k8s.io) is unavailable" in r.getMessage()
        ]
        assert len(warned) == 1, warned
        await stop(app, "alice")
        await reading
    finally:
        meta = saved["metadata"]
        kueue.apply(
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": meta["name"], "labels": meta.get("labels") or {}},
                "spec": saved["spec"],
            }
        )
        # the aggregator serves it again only once it has checked it: the next test needs it
        kueue.wait(
            "the visibility API back",
            lambda: kueue.plane.request("GET", "/apis/visibility.kueue.x-k8s.io/v1beta2")[0] == 200,
            timeout=60,
        )


async def test_two_notebooks_behind_a_job_see_their_own_places(kueue_queues, real_hub):
    kueue = kueue_queues
    queues(kueue, {R1: 1, R2: 0})
    app, cluster = await kueue_hub(real_hub)
    await job_holding(kueue, cluster, pods=1)
    events = {"alice": [], "bob": []}
    readers = []
    for user in ("alice", "bob"):
        r = await spawn(app, user, {"tier": "notebook"})
        assert r.status_code == 202, r.text
        await asyncio.to_thread(kueue.wait_workload, f"jupyter-{user}")
        readers.append(asyncio.ensure_future(read_progress(app, user, events[user], timeout=120)))
    # Kueue orders its queue (its requeue timestamps move a workload found inadmissible
    # behind later ones), so who is first may change: each must see a place of its own.
    head = re.compile(r"#(\d+) in line for 1g notebook \(ClusterQueue team-vision\): ")

    def places() -> dict[str, int]:
        latest = {}
        for user, said in events.items():
            shown = [m for e in said if (m := head.match(e.get("message", "")))]
            if shown:
                latest[user] = int(shown[-1].group(1))
        return latest

    try:
        await until(lambda: sorted(places().values()) == [1, 2], what="places #1 and #2 shown")
    except TimeoutError as e:
        said = {u: [e.get("message") for e in events[u]][-2:] for u in events}
        raise AssertionError(f"{e}; the progress ended with {said}") from None
    for user in ("alice", "bob"):
        await stop(app, user)
    await asyncio.gather(*readers)


async def test_a_cohort_lends_its_unused_quota_to_a_team_with_none_left(kueue_queues, real_hub):
    kueue = kueue_queues
    kueue.resource_flavor("mig")
    kueue.cluster_queue("team-vision", {"mig": {R1: 0, R2: 0}}, cohort="lab")
    kueue.cluster_queue("team-nlp", {"mig": {R1: 2, R2: 0}}, cohort="lab", lending_limit={R1: 1})
    kueue.local_queue("team-vision", "team-vision")
    app, _ = await kueue_hub(real_hub)
    r = await spawn(app, "alice", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "alice", timeout=90)
    decision = app.users["alice"].spawners[""].claim.decision
    assert decision.granted.profile == "1g.10gb" and not decision.fallback
    assert "ClusterQueue team-vision has 1 of 0 nvidia.com/mig-1g.10gb left" in decision.message
    assert "(incl. 1 borrowed from its cohort)" in decision.message
    wl = kueue.workload_of("jupyter-alice")
    assert wl["status"]["admission"]["clusterQueue"] == "team-vision"
    await stop(app, "alice")
