"""A stop while the server starts (hub/startstop.py ``_end_start``).

JupyterHub answers a DELETE of a pending spawn by cancelling the spawn (and with it
``start()``), then, a second later, calling ``stop()``. Each attempt of a start ran in a task
of its own, which that cancellation did not reach. A 4-worker test run met what followed
(``test_waiting_crowd``: 13 pods on a node of 7 slices): the start released the slice, went
on, and created its pod on it beside another spawn's, then failed ("cannot go from released
to bound"). A stop now ends the whole start first, and waits for a pod create request
already sent; a pod it made is deleted before the claim lets the slice go.

Both tests fail on the code before this fix: bob's pod is created on the slice beside
alice's.
"""

from __future__ import annotations

import asyncio
import logging
import time

from hub_harness import H100, spawn, stop, wait_ready
from realk8s import RealCluster

from mig_spawner.core.claim import BOUND, RELEASED

ONE_SLICE = {"nodes": [{"name": "h", "gpu": H100, "strategy": "mixed", "mig": [["1g.10gb"]]}]}
TIERS = {"notebook": {"display_name": "1g notebook", "fallback": False}}
HOLD = 2.5  # seconds bob's pod is held before its create reaches (or is answered by) the API


async def until(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def jhub_pods(cluster) -> list[str]:
    return sorted(
        p["metadata"]["name"] for p in cluster.pods if p["metadata"]["namespace"] == "jhub"
    )


async def stop_bob_then_start_alice(app, cluster, caplog, held: float) -> None:
    """DELETE bob's pending spawn; once it is stopped, alice takes the only slice. Then wait
    out bob's hold: nothing of bob's may appear after his stop."""
    bob = app.users["bob"].spawners[""]  # JupyterHub may make a new one after the stop
    await stop(app, "bob")  # JupyterHub: cancel its wait, sleep 1 s, stop()
    assert not bob.ready
    assert bob.claim is not None and bob.claim.state == RELEASED, bob.claim
    view = bob.cluster_view()
    gone = lambda: "jhub/jupyter-bob" not in view.state.pods and not view.state.reservations  # noqa: E731
    await until(gone, "bob's slice given back")
    r = await spawn(app, "alice", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "alice", timeout=60)
    alice = app.users["alice"].spawners[""]
    assert alice.claim.state == BOUND and alice.claim.node == "h"
    await asyncio.sleep(max(0.0, held + HOLD + 1.0 - time.monotonic()))  # bob's hold is over
    assert jhub_pods(cluster) == ["jupyter-alice"]  # no pod of bob's beside alice's
    assert "cannot go from released to bound" not in caplog.text


async def test_a_stop_before_the_pod_is_created_ends_the_start(plane_hub, caplog):
    """Bob's pod manifest takes 2.5 s (an admin's slow ``modify_pod_hook``, inside the start):
    the stop comes while the start is still before its create."""
    caplog.set_level(logging.INFO)
    held = []

    async def slow_for_bob(spawner, pod):
        if spawner.user.name == "bob":
            held.append(time.monotonic())
            await asyncio.sleep(HOLD)
        return pod

    app, cluster = await plane_hub(
        spec=ONE_SLICE,
        tiers=TIERS,
        extra={
            "JupyterHub": {"tornado_settings": {"slow_spawn_timeout": 0}},
            "KubeSpawner": {"modify_pod_hook": slow_for_bob},
        },
    )
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await until(lambda: held, "bob's pod manifest")
    await stop_bob_then_start_alice(app, cluster, caplog, held[0])


async def test_a_stop_while_the_pod_create_is_in_flight_waits_for_it(hub, caplog):
    """Bob's create request is held 2.5 s by the API server, then carried out (as a slow API
    server does with a request its client gave up on). Emulator only: the hold is a fault
    injected into the emulated API server."""
    caplog.set_level(logging.INFO)
    app, cluster = await hub(
        spec=ONE_SLICE,
        tiers=TIERS,
        extra={"JupyterHub": {"tornado_settings": {"slow_spawn_timeout": 0}}},
    )
    assert not isinstance(cluster, RealCluster)
    fault = cluster.inject_faults(
        path_prefix="/api/v1/namespaces/jhub/pods", method="POST", status=None, delay=HOLD
    )
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await until(lambda: fault.hits == 1, "bob's create request")
    held = time.monotonic()
    await stop_bob_then_start_alice(app, cluster, caplog, held)
    assert "waiting for its pod create request to settle" in caplog.text
