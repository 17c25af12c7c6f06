"""``backend = "dra"`` through a real JupyterHub on the real control plane (kube-apiserver,
kube-scheduler with DRA, resource.k8s.io/v1): the node agent publishes its GPUs as NVIDIA's
DRA driver does (ResourceSlices of ``gpu.nvidia.com``, DeviceClass ``mig.nvidia.com``), the
hub runs as the Z2JH hub ServiceAccount with our ClusterRole.

Here: the scheduler does the fallback (every 1g device allocated: it picks the 2g step of
the claim), and the user is told so, as with the device plugin.
"""

from __future__ import annotations

import asyncio

import pytest
from hub_harness import BALANCED_H100, pods_of, read_progress, spawn, stop, wait_ready

pytestmark = pytest.mark.hub

CLAIMS = "/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims"


def batch_claim(name: str, profile: str) -> dict:
    """A claim someone else's job makes for one MIG device of ``profile``."""
    cel = f"device.attributes['gpu.nvidia.com'].profile == '{profile}'"
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "gpu",
                        "exactly": {
                            "deviceClassName": "mig.nvidia.com",
                            "selectors": [{"cel": {"expression": cel}}],
                        },
                    }
                ]
            }
        },
    }


def batch_pod(name: str, claim: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "resourceClaims": [{"name": "gpu", "resourceClaimName": claim}],
            "containers": [
                {"name": "job", "image": "busybox", "resources": {"claims": [{"name": "gpu"}]}}
            ],
        },
    }


def take_devices(cluster, profile: str, n: int, namespace: str = "research") -> None:
    """``n`` batch jobs mig-spawner did not create, each holding one ``profile`` device."""
    for i in range(n):
        claim = f"batch-{profile.replace('.', '-')}-{i}"
        status, body = cluster.plane.request(
            "POST", CLAIMS.format(ns=namespace), batch_claim(claim, profile)
        )
        assert status == 201, body
        cluster.create_pod(batch_pod(f"{claim}-pod", claim), namespace=namespace)

    def running(c) -> int:
        return sum(
            1
            for p in c.pods
            if p["metadata"]["namespace"] == namespace
            and p["metadata"]["name"].startswith(f"batch-{profile.replace('.', '-')}")
            and (p.get("status") or {}).get("phase") == "Running"
        )

    cluster.wait_for(lambda c: running(c) == n, timeout=60, what=f"{n} batch jobs running")


async def until_held(view, requests: dict, n: int) -> None:
    """Until the hub's cache holds ``n`` pods with ``requests`` (read from their claims)."""
    for _ in range(200):
        if sum(1 for p in view.state.pods.values() if dict(p.requests) == requests) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the hub never saw {n} pods holding {requests}")


def claims_of(cluster, namespace: str = "jhub") -> list[dict]:
    status, body = cluster.plane.request("GET", CLAIMS.format(ns=namespace))
    assert status == 200, body
    return body["items"]


async def test_the_scheduler_falls_back_to_2g_when_every_1g_is_allocated(real_hub):
    # containers start 3 s after binding; the POST answers 202 at once: progress is read live
    app, cluster = await real_hub(spec=BALANCED_H100, dra=True, start_delay=3.0)
    app.tornado_application.settings["slow_spawn_timeout"] = 0
    take_devices(cluster, "1g.10gb", 2)  # both 1g.10gb devices allocated to others
    spawner = app.users["bob"].spawners[""]
    view = spawner.cluster_view()
    await view.wait_known(10)
    await until_held(view, {"nvidia.com/mig-1g.10gb": 1}, 2)

    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    events: list = []
    await read_progress(app, "bob", events, timeout=90)
    await wait_ready(app, "bob", timeout=60)
    messages = [e.get("message", "") for e in events]

    (pod,) = pods_of(cluster, user="bob")
    container = pod["spec"]["containers"][0]
    limits = (container.get("resources") or {}).get("limits") or {}
    assert not any(k.startswith("nvidia.com/") for k in limits)  # a claim, no extended resource
    assert container["resources"]["claims"] == [{"name": "gpu"}]
    (ref,) = pod["spec"]["resourceClaims"]
    (claim,) = claims_of(cluster)
    assert ref["resourceClaimName"] == claim["metadata"]["name"]
    steps = claim["spec"]["devices"]["requests"][0]["firstAvailable"]
    assert [s["name"] for s in steps] == ["s0-1g-10gb", "s1-2g-20gb"]  # 1g first
    (result,) = claim["status"]["allocation"]["devices"]["results"]
    assert result["request"] == "gpu/s1-2g-20gb"  # the scheduler's choice
    assert result["driver"] == "gpu.nvidia.com" and result["pool"] == "h"
    assert "2g" in result["device"]
    assert pod["spec"]["nodeName"] == "h"
    owners = claim["metadata"].get("ownerReferences") or []
    assert [o["uid"] for o in owners] == [pod["metadata"]["uid"]]

    told = [m for m in messages if "The scheduler allocated" in m]
    assert told == [
        "The scheduler allocated a 2g.20gb slice: 1g.10gb was full, so you got 2g.20gb."
    ], messages
    record = spawner.claim.record()
    assert record["slice"] == "2g.20gb" and record["fallback"] is True
    assert record["requested"] == "1g.10gb" and record["node"] == "h"
    assert spawner.user_options["profile"].endswith("(fallback from 1g.10gb)")
    assert spawner.environment["MIG_SPAWNER_SLICE"] == "2g.20gb"
    # the cache reads bob's slice from the allocation: quota and availability
    assert view.state.usage("vision", "bob").compute_slices == 2
    (bobs,) = view.state.pods_of("bob")
    assert bobs.profile == "2g.20gb" and bobs.node == "h"

    await stop(app, "bob")
    for _ in range(200):  # the stop deletes the claim
        if not claims_of(cluster):
            break
        await asyncio.sleep(0.05)
    assert claims_of(cluster) == []
