"""A hub restart with people in line (issue 20, item 7), through a real JupyterHub.

The line a previous hub saved is in its ConfigMap: u4 had waited 5 min (#1). The new
hub's line reads it when a tier waits; u4's spawn form says its place is kept, and u4's
re-request takes the old place ahead of u3, who asked first on the new hub. Every change
of the new hub's line is saved back to the same ConfigMap.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from hub_harness import spawn
from jupyterhub.tests.utils import api_request, get_page
from test_waiting import TIERS, fill, line_hub, line_of, until

pytestmark = pytest.mark.hub

NAME = "mig-spawner-line-jupyterhub"


def saved(cluster) -> dict:
    found = cluster.store.find("configmaps", "jhub", NAME)
    return json.loads(found["data"]["line.json"]) if found else {}


async def test_a_restarted_hub_keeps_a_waiting_place_for_its_re_request(hub):
    now = time.time()
    app, cluster = await line_hub(hub)
    place = {
        "key": "jhub/jupyter-u4",
        "user": "u4",
        "server_name": "",
        "tier": "notebook",
        "team": "vision",
        "groups": ["vision"],
        "requested_at": now - 300,
        "deadline": now + 1800,
        "position": 1,
        "eta_seconds": None,
    }
    doc = {"version": 1, "hub": "jupyterhub", "saved_at": now - 5, "places": [place]}
    doc["history"] = {"notebook": [1800.0, 2400.0]}
    cluster.store.create(
        "configmaps",
        "jhub",
        {"metadata": {"name": NAME, "namespace": "jhub"}, "data": {"line.json": json.dumps(doc)}},
    )
    await fill(app)  # the first spawns make the line, which reads the ConfigMap
    line = line_of(app)
    await until(lambda: "jhub/jupyter-u4" in line.kept, what="the kept place read back")
    assert line.history["notebook"][:2] == [1800.0, 2400.0]

    cookies = await app.login_user("u4")
    page = (await get_page("spawn", app, cookies=cookies)).text
    assert "the hub restarted: your place (#1) is kept for 10 min - press Start" in page

    r = await spawn(app, "u3", {"tier": "notebook"})  # asks first on this hub
    assert r.status_code == 202, r.text
    await until(lambda: "jhub/jupyter-u3" in line.line, what="u3 in line")
    r = await spawn(app, "u4", {"tier": "notebook"})
    assert r.status_code == 202, r.text
    await until(lambda: "jhub/jupyter-u4" in line.line, what="u4 in line")
    assert line.line.positions() == {"jhub/jupyter-u4": 1, "jhub/jupyter-u3": 2}
    assert "jhub/jupyter-u4" not in line.kept  # a place is taken back once

    def saved_keys():
        return [p["key"] for p in saved(cluster).get("places", [])]

    await until(lambda: sorted(saved_keys()) == ["jhub/jupyter-u3", "jhub/jupyter-u4"], 10)
    assert {p["key"]: p["position"] for p in saved(cluster)["places"]} == {
        "jhub/jupyter-u4": 1,
        "jhub/jupyter-u3": 2,
    }
    for user in ("u3", "u4"):  # leave the line (DELETE): the saved document follows
        r = await api_request(app, "users", user, "server", method="delete")
        assert r.status_code in (202, 204), r.text
    await until(lambda: saved_keys() == [], 10, what="the line saved empty")


async def test_the_eta_comes_from_the_session_lengths_a_hub_saved(hub):
    """Issue 20's "done when": "#2 in line ... about 6 min". The previous hub saw eight
    notebook sessions of 6.5 min end (its ConfigMap keeps them); the two running now have
    just started, so the second slice frees in about 6 min and u4, second in line, reads it
    in its progress stream. A 2g batch job runs too: the notebook tier (here at most 0
    fallback steps) can never get its slice, so u5, third, waits for a second round
    (about 12-13 min), not for the batch job's end."""
    from hub_harness import read_progress
    from test_waiting import messages_of

    doc = {"version": 1, "hub": "jupyterhub", "saved_at": time.time() - 5, "places": []}
    doc["history"] = {"notebook": [390.0] * 8}
    notebook = {**TIERS["notebook"], "max_fallback_steps": 0}
    notebook.pop("fallback")  # falls back in principle, never a step in fact
    app, cluster = await line_hub(hub, tiers={**TIERS, "notebook": notebook})
    cluster.store.create(
        "configmaps",
        "jhub",
        {"metadata": {"name": NAME, "namespace": "jhub"}, "data": {"line.json": json.dumps(doc)}},
    )
    await fill(app)
    limits = {"nvidia.com/mig-2g.20gb": "1"}
    batch = {
        "metadata": {"name": "batch"},
        "spec": {
            "containers": [{"name": "job", "image": "busybox", "resources": {"limits": limits}}]
        },
    }
    cluster.create_pod({"apiVersion": "v1", "kind": "Pod", **batch}, namespace="research")
    view = app.users["u1"].spawners[""].cluster_view()
    await until(
        lambda: (
            (view.state.pods.get("research/batch") or 0) and view.state.pods["research/batch"].node
        ),
        what="the batch pod running",
    )
    line = line_of(app)
    await until(lambda: len(line.history.get("notebook", [])) >= 8, what="the history read back")
    for user in ("u3", "u4", "u5"):
        r = await spawn(app, user, {"tier": "notebook"})
        assert r.status_code == 202, r.text
        await until(lambda u=user: f"jhub/jupyter-{u}" in line.line, what=f"{user} in line")
    shown = {"u4": [], "u5": []}
    readers = [asyncio.ensure_future(read_progress(app, u, e)) for u, e in shown.items()]
    try:
        for events in shown.values():
            await until(
                lambda e=events: any("in line" in m for m in messages_of(e)), what="a line message"
            )
        assert "#2 in line for 1g notebook (H100 80GB): about 6 min" in messages_of(shown["u4"])
        third = next(m for m in messages_of(shown["u5"]) if m.startswith("#3 in line"))
        minutes = re.fullmatch(r"#3 in line for 1g notebook \(H100 80GB\): about (\d+) min", third)
        assert minutes and 11 <= int(minutes[1]) <= 13, third  # 2 rounds of 6.5 min, less ages
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    for user in ("u3", "u4", "u5"):
        r = await api_request(app, "users", user, "server", method="delete")
        assert r.status_code in (202, 204), r.text
