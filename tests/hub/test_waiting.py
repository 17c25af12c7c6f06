"""The waiting line through a real JupyterHub over real HTTP (issue 20, items 1-6 and 11).

Each test runs on the emulator and on the real control plane (``plane_hub``). The cluster
has two 1g.10gb (one H100 cut 1g, 1g, 2g, 3g) and the tier ``notebook`` does not fall
back, so two running servers fill it and the next spawns wait.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from hub_harness import H100, pods_of, read_progress, spawn, stop, wait_ready
from jupyterhub.tests.utils import api_request

pytestmark = pytest.mark.hub

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
USERS = ["u1", "u2", "u3", "u4", "u5"]
TEAMS = {"vision": USERS}
TIERS = {
    "notebook": {
        "display_name": "1g notebook",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "fallback": False,
        "max_wait": 120,
    },
    "now": {"display_name": "1g now", "compute_slices": 1, "fallback": False},
}


async def line_hub(plane_hub, **mig):
    settings = dict(tiers=TIERS, teams=TEAMS, team_quotas={"vision": {"compute_slices": 7}})
    settings.update(mig)
    return await plane_hub(spec=ONE_H100, **settings)


async def fill(app, users=("u1", "u2")) -> None:
    for user in users:
        r = await spawn(app, user, {"tier": "notebook"})
        assert r.status_code in (201, 202), r.text
    await asyncio.gather(*(wait_ready(app, u, timeout=90) for u in users))


def line_of(app):
    return app.users["u1"].spawners[""].waiting_line()


async def until(predicate, timeout: float = 30, what: str = "") -> float:
    """Wait for ``predicate()``; the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"not {what} after {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def messages_of(events) -> list[str]:
    return [e.get("message", "") for e in events]


async def test_positions_shown_updated_and_a_wait_longer_than_start_timeout(plane_hub, monkeypatch):
    """u3 and u4 wait past start_timeout (5 s); the stream says #1 / #2, again at each
    heartbeat (1 s here, 30 s in a hub), and moves up; each stop admits the head within
    seconds; both start without touching anything."""
    from mig_spawner.hub import waiting

    monkeypatch.setattr(waiting, "HEARTBEAT", 1.0)
    app, cluster = await line_hub(plane_hub, extra={"KubeSpawner": {"start_timeout": 5}})
    await fill(app)
    line = line_of(app)
    for user in ("u3", "u4"):
        r = await spawn(app, user, {"tier": "notebook"})
        assert r.status_code == 202, r.text  # pending, exactly as a slow spawn
        await until(lambda u=user: f"jhub/jupyter-{u}" in line.line or False, what="in line")
    assert line.line.positions() == {"jhub/jupyter-u3": 1, "jhub/jupyter-u4": 2}
    events: list[dict] = []
    reader = asyncio.ensure_future(read_progress(app, "u4", events))
    await until(lambda: any("in line" in m for m in messages_of(events)), what="a line message")
    assert "#2 in line for 1g notebook (H100 80GB): time unknown" in messages_of(events)
    await asyncio.sleep(7)  # longer than start_timeout: the wait is not cut by it
    assert not pods_of(cluster, user="u3") and not pods_of(cluster, user="u4")  # no pod
    assert app.users["u3"].spawners[""].pending == "spawn"
    assert app.users["u3"].spawners[""].claim.state == "waiting"
    # the same position again at each heartbeat while nothing changes
    assert messages_of(events).count("#2 in line for 1g notebook (H100 80GB): time unknown") >= 3

    gone = []  # when the hub applied the watch event of u1's pod leaving
    view = app.users["u1"].spawners[""].cluster_view()
    view.add_listener(
        lambda kind, obj: (
            gone.append(time.monotonic())
            if kind == "pods" and "jhub/jupyter-u1" not in view.state.pods and not gone
            else None
        )
    )
    u3 = app.users["u3"].spawners[""]
    await stop(app, "u1")
    await until(lambda: u3.claim.state != "waiting", what="u3 admitted")
    admitted = time.monotonic()
    took = await until(lambda: bool(pods_of(cluster, user="u3")), what="u3's pod")
    assert took < 5, took  # the stop admits the head within seconds
    assert gone and u3.claim.state in ("reserved", "pinned", "bound")
    print(f"u3 admitted {1000 * (admitted - gone[0]):.0f} ms after the pod-deleted watch event")
    await wait_ready(app, "u3", timeout=90)
    await until(lambda: "#1 in line for 1g notebook (H100 80GB): time unknown"
                in messages_of(events), what="u4 moved up")  # fmt: skip
    await stop(app, "u2")
    await wait_ready(app, "u4", timeout=90)
    await asyncio.wait_for(reader, 60)
    assert events[-1].get("ready"), events
    shown = messages_of(events)
    assert shown.index("#2 in line for 1g notebook (H100 80GB): time unknown") < shown.index(
        "#1 in line for 1g notebook (H100 80GB): time unknown"
    )
    assert len(line.line) == 0
    (pod,) = pods_of(cluster, user="u4")
    assert "nvidia.com/mig-1g.10gb" in pod["spec"]["containers"][0]["resources"]["limits"]


async def test_delete_while_waiting_creates_no_pod_and_leaves_the_line(plane_hub):
    app, cluster = await line_hub(plane_hub)
    await fill(app)
    line = line_of(app)
    docs: list[dict] = []
    line.subscribe(docs.append)
    r = await spawn(app, "u3", {"tier": "notebook"})
    assert r.status_code == 202, r.text
    await until(lambda: "jhub/jupyter-u3" in line.line, what="in line")
    # subscribers get the persisted document (line-store saves it)
    (place,) = docs[-1]["places"]
    assert (docs[-1]["version"], docs[-1]["hub"]) == (1, "jupyterhub")
    assert (place["key"], place["user"], place["tier"], place["team"]) == (
        "jhub/jupyter-u3",
        "u3",
        "notebook",
        "vision",
    )
    assert place["position"] == 1 and abs(place["deadline"] - place["requested_at"] - 120) < 1e-3
    spawner = app.users["u3"].spawners[""]
    r = await api_request(app, "users", "u3", "server", method="delete")
    assert r.status_code in (202, 204), r.text
    await until(lambda: "jhub/jupyter-u3" not in line.line, timeout=5, what="left the line")
    await until(lambda: not spawner.active, what="u3 stopped")
    assert spawner.claim.state == "released"
    await stop(app, "u1")  # a freed slice admits nobody: u3 left
    await asyncio.sleep(2)
    assert docs[-1]["places"] == []
    # u1's session ended: its length joined the tier's history (the ETA's)
    (held,) = line.history["notebook"]
    assert 0 < held < 300 and docs[-1]["history"]["notebook"] == [held]
    assert not pods_of(cluster, user="u3")
    view = spawner.cluster_view()
    assert "jhub/jupyter-u3" not in view.state.reservations
    r = await spawn(app, "u5", {"tier": "notebook"})  # the freed slice is there for u5
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "u5", timeout=90)


async def test_quota_and_a_tier_that_does_not_wait_are_refused_at_once(plane_hub):
    app, cluster = await line_hub(plane_hub, team_quotas={"vision": {"compute_slices": 1}})
    await fill(app, users=("u1",))
    line = line_of(app)
    # one 1g.10gb is free, but the team's quota (1 of 1) is used: refused at once, 403
    started = time.monotonic()
    r = await spawn(app, "u2", {"tier": "notebook"})
    assert r.status_code == 403, r.text
    assert "quota" in r.json()["message"]
    assert time.monotonic() - started < 5
    assert len(line.line) == 0 and not pods_of(cluster, user="u2")
    # the other slice taken too (a batch job): the quota would refuse any slice that
    # frees, so the spawn is refused at once rather than left waiting for nothing
    limits = {"nvidia.com/mig-1g.10gb": "1"}
    batch = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "batch"},
        "spec": {
            "containers": [{"name": "job", "image": "busybox", "resources": {"limits": limits}}]
        },
    }
    cluster.create_pod(batch, namespace="research")
    view = app.users["u1"].spawners[""].cluster_view()
    await until(lambda: "research/batch" in view.state.pods, what="the batch pod seen")
    started = time.monotonic()
    r = await spawn(app, "u3", {"tier": "notebook"})
    assert r.status_code == 403, r.text
    assert "waiting in line for a slice would not help" in r.json()["message"]
    assert time.monotonic() - started < 5
    assert len(line.line) == 0 and not pods_of(cluster, user="u3")


async def test_a_tier_without_max_wait_is_refused_at_once_for_capacity(plane_hub):
    app, cluster = await line_hub(plane_hub)
    await fill(app)
    started = time.monotonic()
    r = await spawn(app, "u3", {"tier": "now"})
    assert r.status_code == 503, r.text
    assert "Try again when a server stops" in r.json()["message"]
    assert time.monotonic() - started < 5
    assert len(line_of(app).line) == 0 and not pods_of(cluster, user="u3")
