"""The same API-behaviour tests against the emulator and the real kube-apiserver.

Each test runs twice (``[emulator]`` and ``[real]``). What they pin is what KubeSpawner and
mig-spawner's cluster watcher rely on; a difference is either fixed in the emulator or
written down in :mod:`mig_spawner.demo.emulator`'s docstring.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from conformance_helpers import NAMESPACE, pod

PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"


async def read_watch(api, path: str, rv: str, *, until, timeout: float = 20, **params):
    """Collect watch events from ``rv`` until ``until(events)`` is true (or the stream ends)."""
    events: list[dict] = []
    query = {"watch": "true", "resourceVersion": rv, **params}
    session = api.api.session

    async def run():
        async with session.get(api.api.server + path, params=query) as resp:
            assert resp.status == 200, await resp.text()
            async for line in resp.content:
                if line.strip():
                    events.append(json.loads(line))
                    if until(events):
                        return

    await asyncio.wait_for(run(), timeout)
    return events


async def test_list_then_watch_from_the_list_resource_version(api):
    await api.create_pod(pod("before"))
    status, listed = await api.api.request("GET", PODS)
    assert status == 200
    assert listed["kind"] == "PodList"
    rv = listed["metadata"]["resourceVersion"]
    assert rv and int(rv) > 0
    assert [p["metadata"]["name"] for p in listed["items"]] == ["before"]
    await api.create_pod(pod("after"))
    events = await read_watch(
        api, PODS, rv, until=lambda ev: any(e["object"]["metadata"]["name"] == "after" for e in ev)
    )
    # the watch starts after the list: "before" is not replayed (its later changes come as
    # MODIFIED, being scheduled and started), "after" comes as ADDED
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert ("ADDED", "before") not in seen
    first = next(e for e in events if e["object"]["metadata"]["name"] == "after")
    assert first["type"] == "ADDED"
    assert first["object"]["kind"] == "Pod" and first["object"]["apiVersion"] == "v1"
    assert int(first["object"]["metadata"]["resourceVersion"]) > int(rv)


async def test_watch_from_a_compacted_resource_version_is_410_expired(api):
    old = await api.expired_rv()
    events = await read_watch(api, PODS, old, until=lambda ev: True)
    (event,) = events
    assert event["type"] == "ERROR"  # HTTP 200, then one ERROR event carrying the Status
    status = event["object"]
    assert status["kind"] == "Status" and status["code"] == 410
    assert status["reason"] in ("Expired", "Gone")
    assert "too old resource version" in status["message"]


async def test_kubernetes_asyncio_sees_410_as_an_api_exception(api):
    from kubernetes_asyncio import watch
    from kubernetes_asyncio.client.exceptions import ApiException

    old = await api.expired_rv()
    core = await api.core()
    try:
        stream = watch.Watch().stream(
            core.list_namespaced_pod, NAMESPACE, resource_version=old, timeout_seconds=5
        )
        with pytest.raises(ApiException) as info:
            async for _event in stream:
                pass
        assert info.value.status == 410
    finally:
        await core.api_client.close()


async def test_bookmarks_carry_a_resource_version(api):
    if api.name == "emulator":
        api.cluster.api.bookmark_interval = 1.0
    await api.create_pod(pod("marked"))
    _status, listed = await api.api.request("GET", PODS)
    rv = listed["metadata"]["resourceVersion"]
    # The real server's watch cache sends a bookmark about 2 s before a watch's timeout,
    # from a 1 s timer, and only once its pods' resource version has moved past the one
    # the watch started from (k8s.io/apiserver's cacheWatcher.process): with no pod
    # event, that waits for etcd's progress notice, which may come too late. So a pod is
    # created as each watch starts. On a loaded machine a watch can still close first:
    # watch again (at most four times), each attempt from the listed rv.
    marks = []
    for attempt in range(4):

        async def nudge(name=f"nudge-{attempt}"):
            await asyncio.sleep(0.5)
            await api.create_pod(pod(name))

        nudging = asyncio.ensure_future(nudge())
        try:
            events = await read_watch(
                api,
                PODS,
                rv,
                until=lambda ev: any(e["type"] == "BOOKMARK" for e in ev),
                timeout=20,
                allowWatchBookmarks="true",
                timeoutSeconds="8",
            )
        finally:
            await nudging
        marks = [e for e in events if e["type"] == "BOOKMARK"]
        if marks:
            break
    assert marks, "no BOOKMARK on three watches that asked for them"
    mark = marks[0]
    assert mark["object"]["kind"] == "Pod"
    assert int(mark["object"]["metadata"]["resourceVersion"]) >= int(rv)


async def test_label_and_field_selectors_on_lists(api):
    await api.create_pod(pod("a1", {"app": "a", "env": "prod"}))
    await api.create_pod(pod("a2", {"app": "a", "env": "dev"}))
    await api.create_pod(pod("b1", {"app": "b"}))
    await api.create_pod(pod("nowhere", {"app": "b"}, nodeSelector={"no-such": "label"}))

    async def names(**params):
        status, body = await api.api.request("GET", PODS, params=params)
        assert status == 200, body
        return sorted(p["metadata"]["name"] for p in body["items"])

    assert await names(labelSelector="app=a") == ["a1", "a2"]
    assert await names(labelSelector="app=a,env!=prod") == ["a2"]
    assert await names(labelSelector="env in (prod,dev)") == ["a1", "a2"]
    assert await names(labelSelector="!env") == ["b1", "nowhere"]
    assert await names(labelSelector="env") == ["a1", "a2"]
    assert await names(fieldSelector="metadata.name=b1") == ["b1"]
    assert await names(fieldSelector="spec.nodeName=") == ["nowhere"]
    await api.wait_pod("b1", lambda p: p["status"].get("phase") == "Running")
    assert "b1" in await names(fieldSelector="status.phase=Running")
    assert await names(fieldSelector="status.phase!=Running,metadata.name=nowhere") == ["nowhere"]
    status, body = await api.api.request("GET", PODS, params={"fieldSelector": "spec.priority=1"})
    assert status == 400 and "field label not supported" in body["message"]
    status, body = await api.api.request("GET", PODS, params={"labelSelector": "app in (a"})
    assert status == 400


async def test_a_watch_with_a_label_selector_sees_objects_leave_it(api):
    created = await api.create_pod(pod("mover", {"app": "x"}))
    rv = created["metadata"]["resourceVersion"]
    patch = {"metadata": {"labels": {"app": "y"}}}
    status, _ = await api.api.request(
        "PATCH", f"{PODS}/mover", patch, "application/merge-patch+json"
    )
    assert status == 200
    events = await read_watch(
        api,
        PODS,
        rv,
        until=lambda ev: any(e["type"] == "DELETED" for e in ev),
        labelSelector="app=x",
    )
    gone = events[-1]
    assert gone["type"] == "DELETED"
    # the object as it last matched, at the resourceVersion of the change that moved it
    assert gone["object"]["metadata"]["labels"]["app"] == "x"
    assert int(gone["object"]["metadata"]["resourceVersion"]) > int(rv)


async def test_graceful_pod_deletion(api):
    await api.create_pod(pod("graceful"))
    await api.wait_pod("graceful", lambda p: p["status"].get("phase") == "Running")
    status, listed = await api.api.request("GET", PODS)
    rv = listed["metadata"]["resourceVersion"]
    status, body = await api.api.request("DELETE", f"{PODS}/graceful?gracePeriodSeconds=4")
    assert status == 200, body  # a pod on a node is only marked, and returned
    assert body["kind"] == "Pod"
    assert body["metadata"]["deletionTimestamp"]
    assert body["metadata"]["deletionGracePeriodSeconds"] == 4
    events = await read_watch(api, PODS, rv, until=lambda ev: ev[-1]["type"] == "DELETED")
    types = [e["type"] for e in events]
    assert types[0] == "MODIFIED" and types[-1] == "DELETED"
    assert events[0]["object"]["metadata"]["deletionTimestamp"]
    status, _ = await api.get_pod("graceful")
    assert status == 404


async def test_an_unscheduled_pod_is_deleted_at_once(api):
    await api.create_pod(pod("unplaced", nodeSelector={"no-such": "label"}))
    status, body = await api.api.request("DELETE", f"{PODS}/unplaced?gracePeriodSeconds=30")
    assert status == 200, body
    status, _ = await api.get_pod("unplaced")
    assert status == 404  # never bound to a node: no kubelet to wait for


async def test_events_as_kubespawner_reads_them(api):
    name = "evented"
    await api.create_pod(pod(name, container={"resources": {"limits": {"nvidia.com/gpu": "1"}}}))
    core = await api.core()
    try:
        deadline = time.monotonic() + 30
        while True:
            listed = await core.list_namespaced_event(
                NAMESPACE, field_selector="involvedObject.kind=Pod"
            )
            mine = [e for e in listed.items if e.involved_object.name == name]
            reasons = {e.reason for e in mine}
            if {"Scheduled", "Started"} <= reasons or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert {"Scheduled", "Pulled", "Created", "Started"} <= reasons, reasons
        for event in mine:
            assert event.involved_object.kind == "Pod"
            assert event.involved_object.namespace == NAMESPACE
            assert event.involved_object.uid
            assert event.message
            assert event.type == "Normal"
            # KubeSpawner orders by lastTimestamp, falling back to eventTime
            assert event.last_timestamp or event.event_time
        scheduled = next(e for e in mine if e.reason == "Scheduled")
        assert scheduled.message.startswith(f"Successfully assigned {NAMESPACE}/{name} to conf-b")
        # kube-scheduler records through events.k8s.io/v1: eventTime, no lastTimestamp
        assert scheduled.reporting_component == "default-scheduler"
        assert scheduled.action == "Binding" and scheduled.event_time
        assert scheduled.last_timestamp is None and not scheduled.source.component
        started = next(e for e in mine if e.reason == "Started")
        assert started.involved_object.field_path == "spec.containers{main}"
        assert started.source.component == "kubelet" and started.source.host == "conf-b"
    finally:
        await core.api_client.close()


async def test_a_pod_that_fits_nowhere_gets_failed_scheduling(api):
    await api.create_pod(
        pod("toobig", container={"resources": {"limits": {"nvidia.com/gpu": "9"}}})
    )
    body = await api.wait_pod(
        "toobig",
        lambda p: any(c["type"] == "PodScheduled" for c in p["status"].get("conditions") or []),
    )
    (cond,) = [c for c in body["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in cond["message"]
    assert cond["message"].startswith("0/2 nodes are available")


def assert_invalid(status: int, body: dict, field: str) -> None:
    """A 422 Status whose causes name ``field``, as kube-apiserver answers an invalid object."""
    assert status == 422, body
    assert body["kind"] == "Status" and body["reason"] == "Invalid"
    fields = [c.get("field") for c in body["details"]["causes"]]
    assert any(f and f.startswith(field) for f in fields), fields


@pytest.mark.parametrize(
    "labels",
    [{"app": "notebook\n"}, {"app": "-x"}, {"app": "x" * 64}, {"bad key!": "x"}],
    ids=["trailing-newline", "leading-dash", "too-long", "bad-key"],
)
async def test_invalid_label_is_422(api, labels):
    status, body = await api.api.request("POST", PODS, pod("badlabel", labels))
    assert_invalid(status, body, "metadata.labels")


@pytest.mark.parametrize(
    "resources",
    [
        {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "2"}},
        {"requests": {"nvidia.com/mig-1g.10gb": "1"}},
        {"limits": {"nvidia.com/gpu": "500m"}},
    ],
    ids=["limits-differ-from-requests", "requests-without-limits", "fractional"],
)
async def test_invalid_extended_resources_are_422(api, resources):
    status, body = await api.api.request(
        "POST", PODS, pod("badres", container={"resources": resources})
    )
    assert_invalid(status, body, "spec.containers[0].resources")


async def test_extended_resource_limits_default_the_requests(api):
    created = await api.create_pod(
        pod("limited", container={"resources": {"limits": {"nvidia.com/mig-1g.10gb": "1"}}})
    )
    resources = created["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"nvidia.com/mig-1g.10gb": "1"}


async def test_invalid_name_is_422(api):
    status, body = await api.api.request("POST", PODS, pod("Not_A_Name"))
    assert_invalid(status, body, "metadata.name")


@pytest.mark.parametrize("name", ["bob", "bob\n", "Ünïcode user", "a" * 80, "-x-", "x.y_z"])
async def test_our_label_encoding_is_accepted(api, name):
    from mig_spawner.core.pods import label_value

    status, body = await api.api.request(
        "POST", PODS, pod(f"enc-{len(name)}", {"mig-spawner/user": label_value(name)})
    )
    assert status == 201, body
