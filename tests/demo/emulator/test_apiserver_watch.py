"""Watches: resume from a resourceVersion, timeouts, 410 Expired, selectors, broken streams,
and KubeSpawner's own PodReflector riding through them."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from emu_helpers import make_pod
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiException


async def collect(core, *, timeout: int = 1, **kwargs) -> list[tuple[str, str, str]]:
    """(type, name, resourceVersion) of every event until the server ends the watch."""
    events = []
    async with watch.Watch().stream(
        core.list_namespaced_pod, "default", timeout_seconds=timeout, **kwargs
    ) as stream:
        async for event in stream:
            meta = event["object"].metadata
            events.append((event["type"], meta.name, meta.resource_version))
    return events


async def test_watch_resumes_after_resource_version(core):
    await core.create_namespaced_pod("default", make_pod("old"))
    listed = await core.list_namespaced_pod("default")
    await core.create_namespaced_pod("default", make_pod("new"))
    await core.patch_namespaced_pod("new", "default", {"metadata": {"labels": {"x": "1"}}})
    await core.delete_namespaced_pod("new", "default", grace_period_seconds=0)
    events = await collect(
        core, resource_version=listed.metadata.resource_version, field_selector="metadata.name=new"
    )
    assert [(t, n) for t, n, _ in events][:2] == [("ADDED", "new"), ("MODIFIED", "new")]
    assert events[-1][:2] == ("DELETED", "new")
    versions = [int(rv) for _, _, rv in events]
    assert versions == sorted(versions) and min(versions) > int(listed.metadata.resource_version)
    assert "old" not in [n for _, n, _ in events]


async def test_watch_without_resource_version_starts_with_current_objects(core):
    await core.create_namespaced_pod("default", make_pod("a", labels={"app": "x"}))
    await core.create_namespaced_pod("default", make_pod("b", labels={"app": "y"}))
    events = await collect(core, label_selector="app=x")
    assert events[0][:2] == ("ADDED", "a")
    assert "b" not in [n for _, n, _ in events]


async def test_watch_honours_timeout_seconds(core):
    started = time.monotonic()
    await collect(core, timeout=1, resource_version=str(10**6))
    assert 0.9 <= time.monotonic() - started < 3


async def test_too_old_resource_version_gets_410_expired(emu, core):
    listed = await core.list_namespaced_pod("default")
    await core.create_namespaced_pod("default", make_pod("p"))
    emu.compact_history()
    with pytest.raises(ApiException) as expired:
        await collect(core, resource_version=listed.metadata.resource_version)
    assert expired.value.status == 410
    # on the wire: HTTP 200 and one ERROR event carrying a Status, as Kubernetes sends it
    url = f"{emu.url}/api/v1/namespaces/default/pods"
    params = {"watch": "true", "resourceVersion": listed.metadata.resource_version}
    async with aiohttp.ClientSession() as http, http.get(url, params=params) as response:
        assert response.status == 200
        lines = (await response.read()).decode().splitlines()
    event = json.loads(lines[0])
    assert len(lines) == 1 and event["type"] == "ERROR"
    assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"


async def test_bounded_history_expires_old_versions(make_emu):
    cluster = await make_emu(None, history_size=10)
    async with client.ApiClient(client.Configuration(host=cluster.url)) as api:
        core = client.CoreV1Api(api)
        first = await core.create_namespaced_pod("default", make_pod("p0"))
        for i in range(1, 4):
            await core.create_namespaced_pod("default", make_pod(f"p{i}"))
        recent = await collect(core, resource_version=first.metadata.resource_version)
        assert [n for t, n, _ in recent if t == "ADDED"] == ["p1", "p2", "p3"]
        for i in range(4, 12):
            await core.create_namespaced_pod("default", make_pod(f"p{i}"))
        with pytest.raises(ApiException) as expired:
            await collect(core, resource_version=first.metadata.resource_version)
        assert expired.value.status == 410


async def test_watch_selector_transitions(core):
    """An object that stops matching a label selector is DELETED for that watch; one that
    starts matching is ADDED (as the API server's watch cache does)."""
    await core.create_namespaced_pod("default", make_pod("p", labels={"app": "x"}))
    listed = await core.list_namespaced_pod("default", label_selector="app=x")
    await core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": "y"}}})
    await core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": "x"}}})
    events = await collect(
        core, label_selector="app=x", resource_version=listed.metadata.resource_version
    )
    assert [(t, n) for t, n, _ in events] == [("DELETED", "p"), ("ADDED", "p")]


async def test_watch_nodes_and_events_across_namespaces(emu, core):
    listed = await core.list_node()
    emu.cordon("gpu-a100-a")
    nodes = []
    async with watch.Watch().stream(
        core.list_node, resource_version=listed.metadata.resource_version, timeout_seconds=1
    ) as stream:
        async for event in stream:
            nodes.append((event["type"], event["object"].metadata.name))
    assert ("MODIFIED", "gpu-a100-a") in nodes
    assert {n for _, n in nodes} == {"gpu-a100-a"}

    events_rv = (await core.list_event_for_all_namespaces()).metadata.resource_version
    await core.create_namespaced_pod("jhub", make_pod("p", {"nvidia.com/mig-7g.80gb": "1"}))
    reasons = []
    async with watch.Watch().stream(
        core.list_event_for_all_namespaces,
        resource_version=events_rv,
        timeout_seconds=1,
        field_selector="involvedObject.kind=Pod",
    ) as stream:
        async for event in stream:
            reasons.append((event["object"].metadata.namespace, event["object"].reason))
    assert ("jhub", "FailedScheduling") in reasons


async def test_break_watches_abruptly_drops_open_streams(emu, core):
    async def watch_forever():
        async with watch.Watch().stream(
            core.list_namespaced_pod, "default", timeout_seconds=60
        ) as stream:
            async for _ in stream:
                pass

    task = asyncio.create_task(watch_forever())
    await emu.wait_for(lambda c: len(c.api.streams) == 1)
    assert emu.break_watches() == 1
    with pytest.raises(aiohttp.ClientError):
        await asyncio.wait_for(task, 5)
    assert emu.api.streams == {}


async def test_kubespawner_pod_reflector_resyncs_after_broken_watch(emu, core):
    from kubespawner.reflector import NamespacedResourceReflector

    class PodReflector(NamespacedResourceReflector):
        kind = "pods"

    previous = client.Configuration.get_default_copy()
    client.Configuration.set_default(client.Configuration(host=emu.url))
    reflector = PodReflector(namespace="default", labels={"component": "singleuser-server"})
    try:
        await core.create_namespaced_pod(
            "default", make_pod("a", labels={"component": "singleuser-server"})
        )
        await core.create_namespaced_pod("default", make_pod("other", labels={"component": "x"}))
        await reflector.start()
        assert set(reflector.resources) == {"default/a"}
        await emu.wait_for(lambda c: len(c.api.streams) == 1)
        emu.break_watches()
        await core.create_namespaced_pod(
            "default", make_pod("b", labels={"component": "singleuser-server"})
        )
        await emu.wait_for(lambda c: "default/b" in reflector.resources, timeout=10)
        # it relisted and watched again, with the selectors KubeSpawner uses
        lists = [
            p
            for m, path, p in emu.requests
            if m == "GET" and path == "/api/v1/namespaces/default/pods"
        ]
        assert sum(1 for p in lists if p.get("watch") == "True") >= 2
        assert all(p["labelSelector"] == "component=singleuser-server" for p in lists)
        # a 410 on the next watch makes it relist, and it keeps up
        emu.compact_history()
        emu.break_watches(abrupt=False)
        await core.delete_namespaced_pod("a", "default", grace_period_seconds=0)
        await emu.wait_for(lambda c: "default/a" not in reflector.resources, timeout=10)
    finally:
        await reflector.stop()
        client.Configuration.set_default(previous)


async def test_bookmarks_carry_the_latest_resource_version(emu, core):
    listed = await core.list_node()
    emu.api.bookmark_interval = 0.3
    await core.create_namespaced_pod("default", make_pod("p"))  # changes pods, not nodes
    w = watch.Watch()
    types = []
    async with w.stream(
        core.list_node,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=1,
        allow_watch_bookmarks=True,
    ) as stream:
        async for event in stream:
            types.append(event["type"])
    assert set(types) == {"BOOKMARK"} and len(types) >= 3  # periodic, plus one at the end
    # a quiet node watch now resumes from a recent version, not from before the pod changes
    assert int(w.resource_version) == emu.store.rv > int(listed.metadata.resource_version)
    assert await collect(core, timeout=1, resource_version=listed.metadata.resource_version)
