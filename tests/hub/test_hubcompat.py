"""hub/hubcompat.py, the one JupyterHub-version adapter, on each pinned JupyterHub.

Runs in .venv (JupyterHub 6.x) and .venv-z2jh (5.5.0, the Zero to JupyterHub 4.x image):
``make test`` runs tests/hub on both. A refusal must leave JupyterHub's consecutive
failure count as it was on either; a real failure must still count; and on 5.5 the count
would move without the adapter (so the workaround is needed, and lives in one place).
"""

from __future__ import annotations

import jupyterhub
import pytest
from hub_harness import spawn, wait_ready
from test_spawner_trust import wait_done

from mig_spawner.hub import hubcompat, refusals

pytestmark = pytest.mark.hub

JUPYTERHUB_6 = jupyterhub.version_info[0] >= 6


def test_the_adapter_knows_which_jupyterhub_runs():
    assert hubcompat.HUB_KNOWS_REFUSALS is JUPYTERHUB_6
    if JUPYTERHUB_6:
        from jupyterhub.spawner import SpawnException

        assert hubcompat.SpawnException is SpawnException
    else:
        import jupyterhub.spawner

        assert not hasattr(jupyterhub.spawner, "SpawnException")
    exc = refusals.refusal("no room", reason="capacity", status=503)
    assert isinstance(exc, hubcompat.SpawnException)
    assert (exc.status_code, exc.reason, exc.jupyterhub_message) == (503, "capacity", "no room")


async def _refuse_three_times(app) -> list[int]:
    counts = []
    for _ in range(3):
        r = await spawn(app, "bob", {"tier": "training"}, server="big")
        assert r.status_code == 403, r.text
        await wait_done(app.users["bob"].spawners["big"])
        counts.append(app.tornado_application.settings.get("failure_count", 0))
    return counts


async def test_refusals_leave_the_failure_count_and_failures_still_count(hub):
    app, cluster = await hub(
        team_quotas={"vision": {"compute_slices": 1}},
        extra={"MIGSpawner": {"consecutive_failure_limit": 50}},
    )
    assert (await spawn(app, "bob", {"tier": "notebook"})).status_code in (201, 202)
    await wait_ready(app, "bob")
    assert await _refuse_three_times(app) == [0, 0, 0]
    # a failure that is no refusal -- the API server refuses to create the pod -- counts
    cluster.inject_faults(path_prefix="/api/v1/namespaces/jhub/pods", status=500, method="POST")
    r = await spawn(app, "carol", {"tier": "notebook"})  # nlp has no quota here
    assert r.status_code != 403, r.text
    if r.status_code in (201, 202):
        await wait_done(app.users["carol"].spawners[""])
    assert app.tornado_application.settings.get("failure_count", 0) == 1


async def test_without_the_adapter_jupyterhub_5_would_count_refusals(hub, monkeypatch):
    app, _cluster = await hub(
        team_quotas={"vision": {"compute_slices": 1}},
        extra={"MIGSpawner": {"consecutive_failure_limit": 50}},
    )
    monkeypatch.setattr(refusals, "not_a_failure", lambda spawner: None)
    assert (await spawn(app, "bob", {"tier": "notebook"})).status_code in (201, 202)
    await wait_ready(app, "bob")
    # JupyterHub 6 does not count a SpawnException; 5.5 counts every failed spawn
    assert await _refuse_three_times(app) == ([0, 0, 0] if JUPYTERHUB_6 else [1, 2, 3])
