"""The waiting line and the teams' quotas, through a real JupyterHub (issue 20, items 1 and 5).

Each spawn is judged on its own team's quota, never on the decision of the place ahead of
it; a wait ends only when the slice it asks for could never be granted, not when a larger
fallback slice frees that its team's quota cannot take; a start that fails before its pod
exists gives back the slice it was granted in line. On the emulator and the real control
plane (``plane_hub``), with one H100 cut 1g, 1g, 2g, 3g.
"""

from __future__ import annotations

import asyncio

import pytest
from hub_harness import pods_of, spawn, stop, wait_ready
from test_waiting import ONE_H100, fill, line_of, until
from test_waiting import TIERS as LINE_TIERS

pytestmark = pytest.mark.hub

TIERS = {
    "notebook": LINE_TIERS["notebook"],  # 1g, waits up to 120 s
    "flex": {  # 1g, or the 2g when every 1g is taken
        "display_name": "1g flex",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "max_fallback_steps": 1,
        "max_wait": 120,
    },
    "two": {"display_name": "2g", "compute_slices": 2, "min_memory_gb": 20, "fallback": False},
    "three": {"display_name": "3g", "compute_slices": 3, "min_memory_gb": 40, "fallback": False},
}
TEAMS = {"vision": ["u1", "u2", "u3", "u4"], "nlp": ["n1", "n2", "n3"]}


async def quota_hub(plane_hub, quotas: dict, **extra):
    return await plane_hub(spec=ONE_H100, tiers=TIERS, teams=TEAMS, team_quotas=quotas, **extra)


async def fill_the_gpu(app, nlp_users) -> None:
    """u1 and u2 on both 1g.10gb, ``nlp_users`` on the 2g.20gb and the 3g.40gb: all taken."""
    await fill(app)
    for user, tier in zip(nlp_users, ("two", "three"), strict=True):
        r = await spawn(app, user, {"tier": tier})
        assert r.status_code in (201, 202), r.text
    await asyncio.gather(*(wait_ready(app, user, timeout=90) for user in nlp_users))


async def test_a_newcomer_is_judged_on_its_own_teams_quota_not_the_place_ahead(plane_hub):
    """vision waits for a 1g; nlp, running as many servers and its quota used up by its 2g
    and 3g, asks for a 1g later, so its place would come behind vision's: refused at once
    for nlp's quota (403), not put in line on vision's decision."""
    app, cluster = await quota_hub(
        plane_hub, {"vision": {"compute_slices": 7}, "nlp": {"compute_slices": 5}}
    )
    await fill_the_gpu(app, ("n1", "n3"))
    line = line_of(app)
    r = await spawn(app, "u3", {"tier": "notebook"})
    assert r.status_code == 202, r.text
    await until(lambda: "jhub/jupyter-u3" in line.line, what="u3 in line")
    r = await spawn(app, "n2", {"tier": "notebook"})
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert "nlp" in message and "waiting in line for a slice would not help" in message, message
    assert "jhub/jupyter-n2" not in line.line and not pods_of(cluster, user="n2")
    r = await spawn(app, "u4", {"tier": "notebook"})  # vision, with room: waits behind u3
    assert r.status_code == 202, r.text
    await until(lambda: "jhub/jupyter-u4" in line.line, what="u4 in line")
    assert line.line.positions() == {"jhub/jupyter-u3": 1, "jhub/jupyter-u4": 2}
    for user in ("u3", "u4"):
        await stop(app, user)


async def test_a_fallback_slice_over_quota_does_not_end_the_wait_for_the_requested_one(
    plane_hub,
):
    """vision (quota 3) runs two 1g and waits for a third (flex: 1g, else the 2g). The 2g
    frees: vision's quota cannot take it (2 + 2 > 3), so u3 goes on waiting, and starts on
    the first 1g that frees."""
    app, cluster = await quota_hub(
        plane_hub, {"vision": {"compute_slices": 3}, "nlp": {"compute_slices": 7}}
    )
    await fill_the_gpu(app, ("n1", "n2"))
    line = line_of(app)
    u3 = app.users["u3"].spawners[""]
    r = await spawn(app, "u3", {"tier": "flex"})
    assert r.status_code == 202, r.text
    await until(lambda: "jhub/jupyter-u3" in line.line, what="u3 in line")
    passes = line.passes
    await stop(app, "n1")  # the 2g.20gb frees
    view = u3.cluster_view()
    await until(lambda: "jhub/jupyter-n1" not in view.state.pods, what="n1's pod gone")
    await until(lambda: line.passes > passes, what="a pass after the 2g freed")
    assert u3.claim.state == "waiting" and "jhub/jupyter-u3" in line.line
    assert u3._spawn_future is None or not u3._spawn_future.done()
    await stop(app, "u1")  # a 1g.10gb frees: u3's own size
    await wait_ready(app, "u3", timeout=90)
    (pod,) = pods_of(cluster, user="u3")
    assert "nvidia.com/mig-1g.10gb" in pod["spec"]["containers"][0]["resources"]["limits"]


async def test_a_start_failing_before_its_pod_gives_back_the_slice_it_got_in_line(
    plane_hub, monkeypatch
):
    """u3 is admitted in line (a slice reserved for it), then its start fails before any
    pod exists. JupyterHub then stops it without calling ``stop()`` (``poll`` finds no
    pod); the slice must come back, and u4, next in line, gets it."""
    from mig_spawner.hub.spawner import MIGSpawner

    start = MIGSpawner.start

    async def start_failing_for_u3(self):
        if self.user.name == "u3":
            raise RuntimeError("the server's certificates could not be made")
        return await start(self)

    monkeypatch.setattr(MIGSpawner, "start", start_failing_for_u3)
    app, cluster = await quota_hub(plane_hub, {"vision": {"compute_slices": 7}})
    await fill(app)
    line = line_of(app)
    for user in ("u3", "u4"):
        r = await spawn(app, user, {"tier": "notebook"})
        assert r.status_code == 202, r.text
        await until(lambda u=user: f"jhub/jupyter-{u}" in line.line, what=f"{user} in line")
    u3 = app.users["u3"].spawners[""]
    await stop(app, "u1")  # u3 is admitted, reserved, and its start fails
    await until(lambda: u3._spawn_future is not None and u3._spawn_future.done(), what="u3 failed")
    await wait_ready(app, "u4", timeout=90)  # the slice u3 held came back, to the next in line
    view = u3.cluster_view()
    assert "jhub/jupyter-u3" not in view.state.reservations
    assert u3.claim.state == "released" and not pods_of(cluster, user="u3")
