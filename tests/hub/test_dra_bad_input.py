"""``backend = "dra"`` on bad input, through a real hub on the real control plane: no
DeviceClass, a driver publishing other attribute names, a claim the scheduler cannot
allocate -- each one clear line to the user, at once, never a pod stuck until
``start_timeout``, and the hub keeps running."""

from __future__ import annotations

import asyncio

import pytest
from hub_harness import BALANCED_H100, pods_of, spawn
from test_dra_fallback import claims_of

from mig_spawner.demo.controlplane.dradriver import device_class, resource_slices
from mig_spawner.demo.emulator.clusterfile import load_cluster_spec

pytestmark = pytest.mark.hub

BASE = "/apis/resource.k8s.io/v1"


async def outcome(app, user: str, r) -> str:
    """The one line the user gets: the POST's refusal, or the start's failure."""
    if r.status_code >= 400:
        return r.json()["message"]
    spawner = app.users[user].spawners[""]
    for _ in range(600):  # well under start_timeout (60 s)
        future = spawner._spawn_future
        if future is not None and future.done():
            return str(future.exception())
        await asyncio.sleep(0.05)
    raise AssertionError("the start neither failed nor finished in 30 s")


def one_line(message: str) -> None:
    assert "\n" not in message.strip() and "Traceback" not in message, message


async def test_no_device_class_is_one_line_before_any_claim(real_hub):
    app, cluster = await real_hub(spec=BALANCED_H100, dra=True)
    status, body = cluster.plane.request("DELETE", f"{BASE}/deviceclasses/mig.nvidia.com")
    assert status == 200, body
    try:
        r = await spawn(app, "bob", {"tier": "notebook"})
        message = await outcome(app, "bob", r)
        assert "the DeviceClass mig.nvidia.com does not exist" in message, message
        assert "is NVIDIA's DRA driver installed?" in message
        one_line(message)
        assert claims_of(cluster) == [] and not pods_of(cluster, user="bob")
        assert app.http_server is not None  # the hub goes on
    finally:
        cluster.plane.request("POST", f"{BASE}/deviceclasses", device_class())


async def test_a_driver_with_other_attribute_names_is_named_in_one_line(real_hub):
    app, cluster = await real_hub(spec=BALANCED_H100, dra=True)
    view = app.users["bob"].spawners[""].cluster_view()
    await view.wait_known(10)
    spec = load_cluster_spec(BALANCED_H100)
    for body in resource_slices(spec, rename={"profile": "migProfile", "type": "deviceType"}):
        name = body["metadata"]["name"]
        cluster.plane.request("DELETE", f"{BASE}/resourceslices/{name}")
        status, answer = cluster.plane.request("POST", f"{BASE}/resourceslices", body)
        assert status == 201, answer
    for _ in range(200):
        if view.dra.problem():
            break
        await asyncio.sleep(0.05)
    r = await spawn(app, "bob", {"tier": "notebook"})
    message = await outcome(app, "bob", r)
    assert "no gpu.nvidia.com device has the attributes type and profile" in message, message
    assert "deviceType" in message and "migProfile" in message
    one_line(message)
    assert claims_of(cluster) == []


async def test_a_claim_the_scheduler_cannot_allocate_fails_at_once_saying_so(real_hub):
    """The DeviceClass selects nothing: the hub's view (ResourceSlices) has room, the claim
    is never allocated, the scheduler says so and the start fails with its word."""
    app, cluster = await real_hub(spec=BALANCED_H100, dra=True, unschedulable_retries=1)
    never = device_class()
    never["spec"]["selectors"][0]["cel"]["expression"] = "device.driver == 'no.such.driver'"
    current = cluster.plane.get(f"{BASE}/deviceclasses/mig.nvidia.com")
    never["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    status, body = cluster.plane.request("PUT", f"{BASE}/deviceclasses/mig.nvidia.com", never)
    assert status == 200, body
    try:
        r = await spawn(app, "bob", {"tier": "notebook"})
        message = await outcome(app, "bob", r)
        assert "the scheduler cannot allocate a GPU slice for it" in message, message
        assert "cannot allocate all claims" in message
        assert "Tried 2 time(s); please try again in a few minutes." in message
        one_line(message)
        for _ in range(200):  # both attempts' claims deleted
            if not claims_of(cluster):
                break
            await asyncio.sleep(0.05)
        assert claims_of(cluster) == []
    finally:
        fixed = device_class()
        current = cluster.plane.get(f"{BASE}/deviceclasses/mig.nvidia.com")
        fixed["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        cluster.plane.request("PUT", f"{BASE}/deviceclasses/mig.nvidia.com", fixed)
