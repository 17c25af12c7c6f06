"""A spawn's claim through a real JupyterHub and KubeSpawner: held in ``spawner.claim``,
saved with the state, and released on every way a spawn can end."""

from __future__ import annotations

import asyncio

from hub_harness import H100, spawn, stop, wait_ready
from jupyterhub.tests.utils import api_request

from mig_spawner.core.claim import BOUND, REFUSED, RELEASED

ONE_SLICE = {"nodes": [{"name": "h", "gpu": H100, "strategy": "mixed", "mig": [["1g.10gb"]]}]}


async def _done(spawner, timeout: float = 40) -> BaseException | None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not spawner.ready:
        future = spawner._spawn_future
        if future is not None and future.done():
            return future.exception()
        assert asyncio.get_running_loop().time() < deadline, "spawn neither started nor failed"
        await asyncio.sleep(0.05)
    return None


async def test_a_started_server_holds_a_bound_claim_and_a_stop_releases_it(plane_hub):
    app, _ = await plane_hub()
    await spawn(app, "bob", {"tier": "notebook"})
    await wait_ready(app, "bob")
    spawner = app.users["bob"].spawners[""]
    claim = spawner.claim
    assert claim.state == BOUND and claim.key == spawner.pod_key
    assert claim.request == {"tier": "notebook"}  # what bob asked, as he asked it
    assert spawner.orm_spawner.user_options == {"tier": "notebook"}  # and so is the hub's copy
    model = (await api_request(app, "users", "bob")).json()["servers"][""]
    assert model["user_options"]["mig"] == claim.record()  # the grant, from the claim
    assert model["user_options"]["mig"]["slice"] == "1g.10gb"

    # get_state / load_state round trip: what a restarted hub rebuilds
    saved = spawner.get_state()
    spawner.claim = None
    spawner.user_options = dict(spawner.orm_spawner.user_options)  # as a new hub builds it
    spawner.load_state(saved)
    assert spawner.claim == claim and spawner.claim.request == claim.request
    assert spawner.user_options["mig"] == claim.record()

    await stop(app, "bob")
    assert spawner.claim.state == RELEASED and spawner.claim.reason == "stopped"
    assert spawner.user_options == {"tier": "notebook", "profile": "notebook"}
    assert not spawner.cluster_view().state.reservations


async def test_an_older_hubs_saved_record_rebuilds_a_claim(hub):
    """A hub before claims saved the record alone: the claim is rebuilt around it."""
    app, _ = await hub()
    await spawn(app, "bob", {"tier": "notebook"})
    await wait_ready(app, "bob")
    spawner = app.users["bob"].spawners[""]
    claim = spawner.claim
    saved = {k: v for k, v in spawner.get_state().items() if k != "mig_claim"}
    spawner.claim = None
    spawner.load_state(saved)
    assert spawner.claim.state == BOUND and spawner.claim.grant == claim.grant
    assert spawner.claim.key == claim.key
    await stop(app, "bob")
    assert spawner.claim.state == RELEASED


async def test_a_failed_start_releases_its_claim(hub):
    app, cluster = await hub(spec=ONE_SLICE)
    cluster.inject_faults(path_prefix="/api/v1/namespaces/jhub/pods", status=403, method="POST")
    await spawn(app, "bob", {"tier": "notebook"})
    spawner = app.users["bob"].spawners[""]
    assert await _done(spawner) is not None
    assert spawner.claim.state == RELEASED
    assert not spawner.cluster_view().state.reservations


async def test_a_refused_spawn_ends_refused_and_holds_nothing(hub):
    app, _ = await hub(spec=ONE_SLICE)
    await spawn(app, "bob", {"tier": "notebook"})
    await wait_ready(app, "bob")
    r = await spawn(app, "alice", {"tier": "notebook", "team": "vision"})
    assert r.status_code >= 400
    claim = app.users["alice"].spawners[""].claim
    assert claim.state == REFUSED and "0 of 1 free" in claim.reason
    view = app.users["alice"].spawners[""].cluster_view()
    assert list(view.state.reservations) == []  # bob's pod holds his slice, not a claim


async def test_a_cancelled_start_releases_its_claim(hub):
    """JupyterHub cancels a start (its start_timeout, a shutdown): the claim is released."""
    app, cluster = await hub(spec=ONE_SLICE)
    cluster.inject_faults(path_prefix="/api/v1/namespaces/jhub/pods", status=503, method="POST")
    spawner = app.users["bob"].spawners[""]
    spawner.user_options = {"tier": "notebook"}
    task = asyncio.ensure_future(spawner._start())
    for _ in range(400):
        if spawner.claim is not None and spawner.claim.holds:
            break
        await asyncio.sleep(0.01)
    assert spawner.claim.holds, spawner.claim
    assert spawner.cluster_view().state.reservations  # in flight: the slice is held
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
    assert spawner.claim.state == RELEASED
    # the slice is given back at once, or once a pod create request in flight has settled
    for _ in range(100):
        if not spawner.cluster_view().state.reservations:
            break
        await asyncio.sleep(0.05)
    assert not spawner.cluster_view().state.reservations
