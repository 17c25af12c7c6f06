"""hub/linestore.py with a real MIGSpawner in a real hub: its settings (namespace, hub_id,
``line_restart_grace``, API server) reach the store, and the spawn form shows the restart
message for a kept place of the hub's own line (``spawner.waiting_line()``)."""

from __future__ import annotations

import json
import time

from jupyterhub.tests.utils import get_page
from test_linestore import NAME, Line, document

from mig_spawner.core.linedoc import KeptPlace
from mig_spawner.hub import linestore

MESSAGE = "the hub restarted: your place (#2) is kept for 10 min - press Start"


async def test_attach_with_a_real_spawners_settings(hub):
    app, cluster = await hub(line_restart_grace=120.0)
    spawner = app.users["carol"].spawner
    settings = linestore.settings_of(spawner)
    assert settings["grace"] == 120.0 and settings["namespace"] == "jhub"
    assert settings["hub_id"] == "jupyterhub"
    line = Line()
    store = await linestore.attach(line, **settings)
    doc = document(2)
    line.changed(doc)
    assert await store.flush(10)
    await store.close()  # closes its own API client too
    assert json.loads(cluster.store.find("configmaps", "jhub", NAME)["data"]["line.json"]) == doc

    again = Line()
    before = time.time()
    store = await linestore.attach(again, **linestore.settings_of(spawner))
    assert len(again.kept) == 2
    assert all(before + 120 <= k.until <= time.time() + 120 for k in again.kept.values())
    await store.close()


async def test_with_a_namespace_per_user_the_line_stays_in_the_hubs(hub, monkeypatch):
    """``enable_user_namespaces``: each spawner's ``namespace`` is its user's, but the line
    is the hub's, in the namespace the hub runs in (where its Role allows the ConfigMap)."""
    from kubespawner import KubeSpawner

    monkeypatch.setattr(KubeSpawner, "_namespace_default", lambda self: "jhub")
    app, _ = await hub(extra={"KubeSpawner": {"enable_user_namespaces": True}})
    spawner = app.users["carol"].spawner
    assert spawner.namespace == "jhub-carol"  # KubeSpawner's user namespace template
    settings = linestore.settings_of(spawner)
    assert settings["namespace"] == "jhub"
    await settings["close"]()


async def test_the_form_shows_the_restart_message_for_a_kept_place(hub):
    app, _cluster = await hub()
    carol = app.users["carol"].spawner
    line = carol.waiting_line()  # the hub's own line
    key = f"{carol.namespace}/{carol.pod_name}"
    cookies = await app.login_user("carol")

    page = (await get_page("spawn", app, cookies=cookies)).text
    assert 'id="mig-restart-notice"' not in page and "hub restarted" not in page

    line.kept[key] = KeptPlace(time.time() - 300, 2, time.time() + 599.5, "notebook")
    line.kept["jhub/jupyter-dave"] = KeptPlace(time.time(), 1, time.time() + 600, "notebook")
    page = (await get_page("spawn", app, cookies=cookies)).text
    assert MESSAGE in page and page.count("hub restarted") == 1  # carol's, not dave's

    line.kept[key] = KeptPlace(time.time() - 900, 2, time.time() - 1, "notebook")  # expired
    page = (await get_page("spawn", app, cookies=cookies)).text
    assert "hub restarted" not in page
