"""The progress page's line keeps the reason a server starts on a fallback slice.

Issue 19: the line the progress page shows read "2g.20gb on H100 80GB: ... Started
container notebook", with no word of why; the reason was only in the expanded event log.
Read over real HTTP, the hub's own progress event stream (what the page shows), on the
emulator and on the real control plane.

The stream shows only this start's pod's events: KubeSpawner lists events by pod *name*,
and an API server keeps events an hour, so an earlier pod of the same name left its own.
The test runs bob's server once first, and holds the second start 2 s before it decides,
so the page reads the events before KubeSpawner's start marks where its own begin.
"""

from __future__ import annotations

import asyncio

from hub_harness import H100, pods_of, read_progress, spawn, stop, wait_ready

ONE_H100 = {
    "nodes": [
        {
            "name": "h",
            "gpu": H100,
            "strategy": "mixed",
            "mig": [["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]],
        }
    ]
}


def batch_pod(name: str) -> dict:
    """A pod mig-spawner did not create, holding a 1g.10gb."""
    limits = {"nvidia.com/mig-1g.10gb": "1"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "job", "image": "busybox", "resources": {"limits": limits}}]
        },
    }


async def progress_events(app, user: str, timeout: float = 90) -> list[dict]:
    """The hub's progress event stream for ``user``'s server, read to its end (ready)."""
    events: list[dict] = []
    await read_progress(app, user, events, timeout)
    return events


async def test_every_progress_line_on_a_fallback_says_why(plane_hub):
    # containers start 3 s after binding (an image pull): the pod's events reach the page
    app, cluster = await plane_hub(spec=ONE_H100, start_delay=3.0)
    # slow_spawn_timeout 0: the POST answers 202 at once, so the stream is read while pending
    app.tornado_application.settings["slow_spawn_timeout"] = 0
    # An earlier pod of the same name: bob's first server (on a free 1g.10gb), then stopped.
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code == 202, r.text
    await wait_ready(app, "bob", timeout=60)
    (earlier,) = pods_of(cluster, user="bob")
    await stop(app, "bob")
    for _ in range(600):
        if not pods_of(cluster, user="bob"):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("bob's first pod was never deleted")

    for i in range(2):
        cluster.create_pod(batch_pod(f"batch-{i}"), namespace="research")
    for _ in range(600):
        bound = [p for p in cluster.pods if p["metadata"]["name"].startswith("batch-")]
        if len(bound) == 2 and all(p["spec"].get("nodeName") for p in bound):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the batch pods were never scheduled")

    async def hold(spawner):  # the page asks for progress before this start decides
        await asyncio.sleep(2)

    app.users["bob"].spawner.pre_spawn_hook = hold
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code == 202, r.text
    events = await progress_events(app, "bob")
    await wait_ready(app, "bob", timeout=60)
    (pod,) = pods_of(cluster, user="bob")
    assert "nvidia.com/mig-2g.20gb" in pod["spec"]["containers"][0]["resources"]["limits"]
    assert pod["metadata"]["uid"] != earlier["metadata"]["uid"]

    messages = [e.get("message", "") for e in events]
    assert messages[0] == "Server requested", messages  # JupyterHub's own first line
    assert messages[1].startswith("Starting on the larger 1 × 2g.20gb"), messages
    # KubeSpawner's own lines (scheduling, the pod's events), each with slice and reason
    label = "2g.20gb on H100 80GB (every 1g.10gb taken): "
    pod_lines = [m for m in messages[2:-1] if m]
    assert pod_lines, messages
    assert all(m.startswith(label) for m in pod_lines), messages
    # the scheduler's event comes the 3 s pull before ready, so the page always shows it
    # (later ones may land after the server is ready, when JupyterHub stops the stream)
    assert any("Successfully assigned" in m for m in pod_lines), messages
    assert events[-1].get("ready") is True
    # every pod event shown is this pod's, none the earlier pod's of the same name
    raw = [e["raw_event"] for e in events if e.get("raw_event")]
    assert raw, events
    assert {e["involvedObject"]["uid"] for e in raw} == {pod["metadata"]["uid"]}, messages
    assert sum("Successfully assigned" in m for m in messages) == 1, messages
