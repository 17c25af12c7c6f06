"""Kueue mode through a real JupyterHub, where Kueue is absent or half there: each bad
input is one clear line, never a pod left to wait for ``start_timeout``.

- on the emulator, which serves no Kueue API: the hub logs "Kueue is not installed" once
  and a GPU spawn is refused with it before any pod exists;
- on the real control plane with the real Kueue, which does not manage the hub's
  namespace (its plain-Pod integration is off there): a missing LocalQueue refuses the
  spawn naming it; with the LocalQueue present, the pod carries the queue label, is not
  gated, no Workload appears, the progress says so and the server still starts.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from hub_harness import BALANCED_H100, read_progress, spawn
from realk8s import HUB_NAMESPACE

pytestmark = pytest.mark.hub

TIERS = {
    "notebook": {
        "display_name": "1g notebook",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "max_compute_slices": 3,
        "max_wait": 60,
    }
}
TEAMS = {"vision": ["alice"]}
KUEUE = {"local_queues": {"vision": "team-vision"}}


def kueue_settings(**kueue):
    return dict(tiers=TIERS, teams=TEAMS, team_quotas={}, kueue={**KUEUE, **kueue})


async def spawn_reading_progress(app, user: str, events: list, timeout: float = 120):
    """POST the spawn and read its progress stream while it is pending (the POST may
    answer only once the server is ready); the POST's response."""
    posted = asyncio.ensure_future(spawn(app, user, {"tier": "notebook"}))
    spawner = app.users[user].spawners[""]
    while not spawner.pending and not posted.done():
        await asyncio.sleep(0.01)
    if spawner.pending:
        await read_progress(app, user, events, timeout=timeout)
    return await posted


async def refused_with(app, user: str, words: str) -> list[dict]:
    events: list[dict] = []
    r = await spawn(app, user, {"tier": "notebook"})
    assert r.status_code in (201, 202, 503), r.text
    await read_progress(app, user, events, timeout=60)
    assert events[-1].get("failed"), events
    assert words in events[-1]["message"], events[-1]
    return events


async def test_kueue_not_installed_is_one_line_and_refuses_before_any_pod(hub, caplog):
    caplog.set_level(logging.INFO)
    app, cluster = await hub(spec=BALANCED_H100, **kueue_settings())
    events = await refused_with(
        app, "alice", "Kueue is not installed (kueue.x-k8s.io/v1beta2 ClusterQueues not served)"
    )
    assert "Traceback" not in events[-1]["message"]
    assert not [p for p in cluster.pods if p["metadata"].get("namespace") == "jhub"]
    not_installed = [r for r in caplog.records if "Kueue is not installed" in r.getMessage()]
    # the watch's one line, and the refused spawn's own
    assert len([r for r in not_installed if "retrying" in r.getMessage()]) == 1
    assert not [r for r in caplog.records if r.exc_info and "kueue" in r.getMessage().lower()]


# ------------------------------------------- the real Kueue, not managing the hub's namespace


@pytest.fixture
def crds(kueue_queues):
    """The real Kueue (tests/kueue_harness.py), which manages only its own test namespace:
    in the hub's namespace ``jhub`` its plain-Pod integration is off (no webhook gates a
    pod there, no Workload is made)."""
    yield kueue_queues
    path = f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{HUB_NAMESPACE}/localqueues/team-vision"
    kueue_queues.plane.request("DELETE", path)


async def test_a_missing_local_queue_refuses_the_spawn_naming_it(crds, real_hub, caplog):
    caplog.set_level(logging.INFO)
    app, cluster = await real_hub(spec=BALANCED_H100, **kueue_settings())
    missing = "Kueue's LocalQueue team-vision (MIGSpawner.kueue) does not exist in namespace"
    events = await refused_with(app, "alice", f"{missing} {HUB_NAMESPACE}")
    assert not [p for p in cluster.pods if p["metadata"]["namespace"] == HUB_NAMESPACE]
    ours = [r for r in caplog.records if r.pathname.endswith("hub/kueue.py")]
    lines = [r for r in ours if missing in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None, [r.getMessage() for r in ours]
    assert "Traceback" not in events[-1]["message"]


async def test_without_the_pod_integration_the_pod_says_so_and_still_runs(crds, real_hub, caplog):
    from mig_spawner.hub import kueue as hub_kueue

    caplog.set_level(logging.INFO)
    kueue = crds
    kueue.resource_flavor("mig")
    kueue.cluster_queue("team-vision", {"mig": {"nvidia.com/mig-1g.10gb": 2}})
    kueue.local_queue("team-vision", "team-vision", namespace=HUB_NAMESPACE)
    app, cluster = await real_hub(spec=BALANCED_H100, **kueue_settings(priority_class="notebooks"))
    events: list[dict] = []
    await spawn_reading_progress(app, "alice", events)
    (pod,) = [p for p in cluster.pods if p["metadata"]["namespace"] == HUB_NAMESPACE]
    labels = pod["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "team-vision"
    assert labels["kueue.x-k8s.io/priority-class"] == "notebooks"
    assert not pod["spec"].get("schedulingGates")
    said = [e.get("message", "") for e in events]
    note = [m for m in said if m.startswith("Kueue did not take this pod")]
    assert note == [
        f"Kueue did not take this pod (no {hub_kueue.core.GATE} gate, no Workload): its pod"
        f" integration is not enabled for namespace {HUB_NAMESPACE}; it starts without"
        " Kueue's quota."
    ], said
    warned = [r for r in caplog.records if "Kueue did not take this pod" in r.getMessage()]
    assert len(warned) == 1
    assert events[-1].get("ready"), events[-1]


async def test_a_cpu_profile_in_kueue_mode_is_not_kueues(hub, caplog):
    """Without Kueue installed, a CPU profile still starts at once: no queue label, no
    Kueue check, no note."""
    cpu = [{"display_name": "CPU only", "slug": "cpu", "kubespawner_override": {}}]
    extra = {"KubeSpawner": {"profile_list": cpu}}
    app, cluster = await hub(spec=BALANCED_H100, extra=extra, **kueue_settings())
    r = await spawn(app, "alice", {"profile": "cpu"})
    assert r.status_code == 201, r.text
    (pod,) = [p for p in cluster.pods if p["metadata"].get("namespace") == "jhub"]
    assert "kueue.x-k8s.io/queue-name" not in pod["metadata"]["labels"]
    assert not [r for r in caplog.records if "Kueue did not take" in r.getMessage()]
