"""The waiting line on the admin page and in the figures of mig-spawner's service.

The service is its own process (a real JupyterHub starts and proxies it): it cannot read
the hub's memory, so it reads the ConfigMap the hub saves its line in. Here the ConfigMap
is written as hub/linestore writes it (core.linedoc.configmap_body) into the emulator.
"""

from __future__ import annotations

import asyncio
import time

from test_live_figures import _figures
from test_metrics_adminpage import mig_page

from mig_spawner.core import linedoc

NAME = "mig-spawner-line-jupyterhub"


def place(user, position, tier="notebook", eta=None, team="nlp"):
    now = time.time()
    return {
        "key": f"jhub/jupyter-{user}",
        "user": user,
        "server_name": "",
        "tier": tier,
        "team": team,
        "groups": [team],
        "requested_at": now - 60 * position,
        "deadline": now + 1800,
        "position": position,
        "eta_seconds": eta,
    }


def save(cluster, *places, raw=None):
    doc = {
        "version": 1,
        "hub": "jupyterhub",
        "saved_at": time.time(),
        "places": list(places),
        "history": {},
    }
    body = linedoc.configmap_body(doc, hub="jupyterhub", namespace="jhub")
    if raw is not None:
        body["data"] = {"line.json": raw}
    if cluster.store.find("configmaps", "jhub", NAME) is None:
        cluster.store.create("configmaps", "jhub", body)
    else:
        cluster.store.replace("configmaps", "jhub", NAME, body)


async def test_figures_count_who_waits_per_tier(hub):
    app, cluster = await hub(service=True)
    data = (await _figures(app, "carol")).json()
    assert data["tiers"]["notebook"]["waiting"] == 0  # nothing saved: nobody waits
    save(cluster, place("dan", 1), place("eve", 2), place("fay", 1, tier="training"))
    for _ in range(100):  # the service rereads the ConfigMap at most every 2 s
        data = (await _figures(app, "carol")).json()
        if data["tiers"]["notebook"]["waiting"] == 2:
            break
        await asyncio.sleep(0.1)
    assert data["tiers"]["notebook"]["waiting"] == 2
    assert data["tiers"]["training"]["waiting"] == 1
    save(cluster, raw="{garbled")  # unreadable: the count is unknown, not 0
    for _ in range(100):
        data = (await _figures(app, "carol")).json()
        if data["tiers"]["notebook"]["waiting"] is None:
            break
        await asyncio.sleep(0.1)
    assert data["tiers"]["notebook"]["waiting"] is None


async def test_admin_page_shows_the_line_by_tier_and_position(hub):
    app, cluster = await hub(service=True)
    await app.login_user("admin")
    html = (await mig_page(app, "admin")).text
    assert 'id="mig-line"' in html and "Nobody is waiting." in html
    save(
        cluster,
        place("eve", 2),
        place("dan", 1, eta=360.0),
        place("fay", 1, tier="training", team="vision"),
    )
    for _ in range(100):
        html = (await mig_page(app, "admin", "?fragment=1")).text
        if "mig-line-place" in html:
            break
        await asyncio.sleep(0.1)
    rows = [line for line in html.splitlines() if "mig-line-place" in line]
    assert [r.split("<td>")[3].split("<")[0] for r in rows] == ["dan", "eve", "fay"]
    assert 'data-tier="notebook" data-position="1"' in rows[0]
    assert "1g notebook (2 waiting)" in rows[0] and "about 6 min" in rows[0]
    assert "time unknown" in rows[1] and "3g training (1 waiting)" in rows[2]
    save(cluster, raw='{"version": 9}')
    for _ in range(100):
        html = (await mig_page(app, "admin", "?fragment=1")).text
        if "unreadable" in html:
            break
        await asyncio.sleep(0.1)
    assert "ConfigMap jhub/mig-spawner-line-jupyterhub key line.json" in html
    assert "version is 9" in html and "mig-line-place" not in html
