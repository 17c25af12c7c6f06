"""A pod in the way of a start's create (hub/startstop.py ``_make_create_pod_request``).

KubeSpawner answers a 409 on creating the pod by calling ``stop(True)`` and creating it
again. The pod in the way is an earlier one of the same name or, with a slow API server,
this start's own, whose create timed out on the client but reached the server (a 4-worker
test run met it: ``test_waiting_crowd`` saw 12 pods on a node of 7 slices). That stop
used to release the claim: the slice was free for other spawns while the new pod was being
created on it, and the start then failed ("cannot go from released to bound").
"""

from __future__ import annotations

import asyncio
import logging
import time

from hub_harness import H100, pods_of, spawn, wait_ready
from realk8s import RealCluster

from mig_spawner.core.claim import BOUND

ONE_SLICE = {"nodes": [{"name": "h", "gpu": H100, "strategy": "mixed", "mig": [["1g.10gb"]]}]}
TIERS = {"notebook": {"display_name": "1g notebook", "fallback": False}}
IN_THE_WAY = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "jupyter-bob", "labels": {"left": "behind"}},
    "spec": {"containers": [{"name": "c", "image": "quay.io/jupyter/base-notebook:2024-12-09"}]},
}


async def until(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_pod_in_the_way_is_replaced_and_its_start_keeps_the_slice(plane_hub, caplog):
    caplog.set_level(logging.INFO)
    app, cluster = await plane_hub(
        spec=ONE_SLICE,
        tiers=TIERS,
        extra={"JupyterHub": {"tornado_settings": {"slow_spawn_timeout": 0}}},
    )
    emulated = not isinstance(cluster, RealCluster)
    cluster.create_pod(IN_THE_WAY, namespace="jhub")
    await until(lambda: cluster.pod("jupyter-bob", "jhub") is not None, "the pod in the way")
    if emulated:  # its deletion takes 2 s: a window for another spawn to try the slice
        cluster.inject_faults(
            path_prefix="/api/v1/namespaces/jhub/pods/jupyter-bob",
            method="DELETE",
            status=None,
            delay=2.0,
        )
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await until(lambda: "replacing the pod in the way" in caplog.text, "the replacement")
    if emulated:
        r = await spawn(app, "alice", {"tier": "notebook"})  # while bob's pod is replaced
        alice = app.users["alice"].spawners[""]
        await until(lambda: alice._spawn_future is None or alice._spawn_future.done(), "alice")
        assert not alice.ready
        assert alice.claim is not None and alice.claim.state == "refused", alice.claim
        cluster.clear_faults()

    await wait_ready(app, "bob", timeout=60)
    bob = app.users["bob"].spawners[""]
    assert bob.claim.state == BOUND and bob.claim.node == "h"
    assert "Released the reservation of bob" not in caplog.text
    assert "cannot go from released to bound" not in caplog.text
    pods = [p for p in cluster.pods if p["metadata"]["namespace"] == "jhub"]
    assert [p["metadata"]["name"] for p in pods] == ["jupyter-bob"]  # the old one replaced
    assert "left" not in (pods[0]["metadata"].get("labels") or {})
    assert pods_of(cluster, user="alice") == []


async def test_its_own_pod_in_the_way_is_kept(hub, caplog):
    """Bob's first create times out on the client (1 s) but the API server carries it out
    (after 1.5 s); the retry meets his own pod (409). It is kept, not deleted and created
    again: deleting it freed its slice in the cluster view until the new pod was listed
    (a 4-worker run of the crowd test: 11 pods on a node of 7 slices). Emulator only: the
    slow create is an injected delay."""
    caplog.set_level(logging.INFO)
    app, cluster = await hub(
        spec=ONE_SLICE,
        tiers=TIERS,
        extra={
            "JupyterHub": {"tornado_settings": {"slow_spawn_timeout": 0}},
            "KubeSpawner": {"k8s_api_request_timeout": 1},
        },
    )
    pods = "/api/v1/namespaces/jhub/pods"
    first = cluster.inject_faults(
        path_prefix=pods, method="POST", status=None, delay=1.5, carried_out=True
    )
    retry = cluster.inject_faults(path_prefix=pods, method="POST", status=None, delay=0.5)
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob", timeout=60)
    assert first.hits == 1 and retry.hits == 1
    assert "Found existing pod jupyter-bob" in caplog.text  # KubeSpawner met the 409
    deletes = [r for r in cluster.api.requests if r[0] == "DELETE" and "jupyter-bob" in r[1]]
    assert deletes == []  # kept: its slice was never free
    assert "the pod in the way is this start's own" in caplog.text
    bob = app.users["bob"].spawners[""]
    assert bob.claim.state == BOUND and bob.claim.node == "h"
    assert [p["metadata"]["name"] for p in cluster.pods] == ["jupyter-bob"]
