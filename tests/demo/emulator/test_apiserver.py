"""CRUD, status codes, metadata, patching, discovery, request log and faults, through the
real kubernetes_asyncio client."""

from __future__ import annotations

import json

import aiohttp
import pytest
from emu_helpers import make_pod
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException


def status_of(exc: ApiException) -> dict:
    return json.loads(exc.body)


async def test_create_sets_server_metadata_and_defaults(core):
    created = await core.create_namespaced_pod(
        "default", make_pod("a", {"nvidia.com/mig-1g.10gb": "1"})
    )
    meta = created.metadata
    assert meta.namespace == "default"
    assert len(meta.uid) == 36
    assert meta.creation_timestamp is not None
    assert created.status.phase == "Pending"
    # API defaulting copies limits into missing requests
    assert created.spec.containers[0].resources.requests == {"nvidia.com/mig-1g.10gb": "1"}
    assert created.spec.restart_policy == "Always"
    assert created.spec.scheduler_name == "default-scheduler"
    second = await core.create_namespaced_pod("default", make_pod(None, generate_name="nb-"))
    assert second.metadata.name.startswith("nb-") and len(second.metadata.name) == 8
    assert int(second.metadata.resource_version) > int(meta.resource_version)
    fetched = await core.read_namespaced_pod("a", "default")
    assert fetched.metadata.uid == meta.uid


async def test_error_statuses(core):
    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_pod("nope", "default")
    body = status_of(missing.value)
    assert missing.value.status == 404
    assert body["kind"] == "Status" and body["reason"] == "NotFound"
    assert body["message"] == 'pods "nope" not found'

    await core.create_namespaced_pod("default", make_pod("dup"))
    with pytest.raises(ApiException) as duplicate:
        await core.create_namespaced_pod("default", make_pod("dup"))
    assert duplicate.value.status == 409
    assert status_of(duplicate.value)["reason"] == "AlreadyExists"

    with pytest.raises(ApiException) as nameless:
        await core.create_namespaced_pod("default", make_pod(None))
    body = status_of(nameless.value)
    assert nameless.value.status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert "name or generateName is required" in body["message"]


@pytest.mark.parametrize(
    ("pod", "message"),
    [
        (make_pod("Bad_Name"), "RFC 1123 subdomain"),
        (make_pod("x", labels={"team": "a/b"}), "a valid label must be an empty string"),
        (
            {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c"}]}},
            "spec.containers[0].image: Required value",
        ),
        (
            {
                "metadata": {"name": "x"},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "i",
                            "resources": {"requests": {"nvidia.com/gpu": "1"}},
                        }
                    ]
                },
            },
            "Limit must be set for non overcommitable resources",
        ),
        (
            {
                "metadata": {"name": "x"},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "i",
                            "resources": {
                                "requests": {"nvidia.com/gpu": "1"},
                                "limits": {"nvidia.com/gpu": "2"},
                            },
                        }
                    ]
                },
            },
            "must be equal to nvidia.com/gpu limit of 2",
        ),
        (make_pod("x", {"nvidia.com/gpu": "500m"}), "must be an integer"),
    ],
)
async def test_validation_rejects_what_kubernetes_rejects(core, pod, message):
    with pytest.raises(ApiException) as rejected:
        await core.create_namespaced_pod("default", pod)
    assert rejected.value.status == 422
    assert message in status_of(rejected.value)["message"]


async def test_patch_variants_and_immutable_pod_spec(core):
    await core.create_namespaced_pod("default", make_pod("p", labels={"a": "1", "b": "2"}))
    patched = await core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"c": "3"}}})
    assert patched.metadata.labels == {"a": "1", "b": "2", "c": "3"}
    # merge patch: null removes
    api = core.api_client
    patched = await core.patch_namespaced_pod(
        "p",
        "default",
        {"metadata": {"labels": {"a": None}, "annotations": {"x": "y"}}},
        _content_type="application/merge-patch+json",
    )
    assert patched.metadata.labels == {"b": "2", "c": "3"}
    assert patched.metadata.annotations == {"x": "y"}
    # json patch (a list body selects it)
    patched = await core.patch_namespaced_pod(
        "p", "default", [{"op": "replace", "path": "/metadata/labels/b", "value": "two"}]
    )
    assert patched.metadata.labels["b"] == "two"
    # status sent to the main resource is ignored
    patched = await core.patch_namespaced_pod("p", "default", {"status": {"phase": "Bogus"}})
    assert patched.status.phase in ("Pending", "Running")
    # pod specs are immutable except images, tolerations, activeDeadlineSeconds
    with pytest.raises(ApiException) as forbidden:
        await core.patch_namespaced_pod("p", "default", {"spec": {"nodeSelector": {"a": "b"}}})
    assert forbidden.value.status == 422
    assert "pod updates may not change fields" in status_of(forbidden.value)["message"]
    patched = await core.patch_namespaced_pod(
        "p", "default", {"spec": {"containers": [{"name": "notebook", "image": "other:2"}]}}
    )
    assert patched.spec.containers[0].image == "other:2"
    assert api is core.api_client


async def test_replace_with_stale_resource_version_conflicts(core):
    pod = await core.create_namespaced_pod("default", make_pod("p"))
    await core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"x": "1"}}})
    pod.metadata.labels = {"y": "2"}
    with pytest.raises(ApiException) as stale:
        await core.replace_namespaced_pod("p", "default", pod)
    assert stale.value.status == 409 and status_of(stale.value)["reason"] == "Conflict"


async def test_lists_carry_resource_version_and_paginate(emu, core):
    for i in range(5):
        await core.create_namespaced_pod("default", make_pod(f"p{i}"))
    listed = await core.list_namespaced_pod("default")
    assert listed.metadata.resource_version == str(emu.store.rv)
    assert [p.metadata.name for p in listed.items] == [f"p{i}" for i in range(5)]
    page = await core.list_namespaced_pod("default", limit=2)
    assert [p.metadata.name for p in page.items] == ["p0", "p1"]
    assert page.metadata.remaining_item_count == 3
    rest = await core.list_namespaced_pod("default", limit=10, _continue=page.metadata._continue)
    assert [p.metadata.name for p in rest.items] == ["p2", "p3", "p4"]
    assert rest.metadata._continue is None
    # list items carry no kind/apiVersion, as from a real API server
    async with aiohttp.ClientSession() as http, http.get(f"{emu.url}/api/v1/pods") as response:
        raw = await response.json()
    assert raw["kind"] == "PodList" and "kind" not in raw["items"][0]


async def test_nodes_crud_cordon_and_status(emu, core):
    nodes = await core.list_node()
    assert [n.metadata.name for n in nodes.items] == ["gpu-a100-a", "gpu-h100-a", "gpu-h100-b"]
    node = await core.read_node("gpu-h100-a")
    assert node.status.allocatable["nvidia.com/mig-1g.10gb"] == "7"
    cordoned = await core.patch_node("gpu-h100-a", {"spec": {"unschedulable": True}})
    assert cordoned.spec.unschedulable is True
    # the node lifecycle controller adds the unschedulable taint
    await emu.wait_for(
        lambda c: any(
            t["key"] == "node.kubernetes.io/unschedulable"
            for t in c.node("gpu-h100-a")["spec"].get("taints", [])
        )
    )
    relabelled = await core.patch_node("gpu-h100-a", {"metadata": {"labels": {"team": "vision"}}})
    assert relabelled.metadata.labels["team"] == "vision"
    assert relabelled.metadata.labels["nvidia.com/mig.strategy"] == "mixed"
    status = await core.patch_node_status("gpu-h100-a", {"status": {"allocatable": {"pods": "5"}}})
    assert status.status.allocatable["pods"] == "5"
    assert status.status.allocatable["nvidia.com/mig-1g.10gb"] == "7"
    new = client.V1Node(metadata=client.V1ObjectMeta(name="extra", labels={"k": "v"}))
    created = await core.create_node(new)
    assert created.metadata.uid and "namespace" not in emu.node("extra")["metadata"]
    await core.delete_node("extra")
    with pytest.raises(ApiException) as gone:
        await core.read_node("extra")
    assert gone.value.status == 404


async def test_events_create_list_and_field_selector(emu, core):
    pod = await core.create_namespaced_pod("default", make_pod("p"))
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="p.1"),
        involved_object=client.V1ObjectReference(
            kind="Pod", name="p", namespace="default", uid=pod.metadata.uid
        ),
        reason="Testing",
        message="hello",
        type="Normal",
    )
    created = await core.create_namespaced_event("default", event)
    assert created.count == 1 and created.last_timestamp is not None
    listed = await core.list_event_for_all_namespaces(field_selector="involvedObject.kind=Pod")
    assert "Testing" in [e.reason for e in listed.items]
    assert [
        e.reason
        for e in (
            await core.list_namespaced_event("default", field_selector="involvedObject.kind=Node")
        ).items
    ] == []
    # kubespawner's EventReflector sorts on lastTimestamp or eventTime: both keys are present
    assert "eventTime" in next(e for e in emu.events if e["reason"] == "Testing")


async def test_namespaces_and_auto_creation(emu, core, make_emu):
    names = [n.metadata.name for n in (await core.list_namespace()).items]
    assert {"default", "kube-system"} <= set(names)
    await core.create_namespaced_pod("jhub", make_pod("p"))  # auto-created namespace
    assert (await core.read_namespace("jhub")).status.phase == "Active"
    await core.delete_namespace("jhub")
    await emu.wait_for(lambda c: c.store.find("namespaces", None, "jhub") is None)
    assert emu.pod("p", "jhub") is None

    strict = await make_emu(None, auto_namespaces=False)
    async with client.ApiClient(client.Configuration(host=strict.url)) as api:
        with pytest.raises(ApiException) as missing:
            await client.CoreV1Api(api).create_namespaced_pod("jhub", make_pod("p"))
    assert missing.value.status == 404
    assert status_of(missing.value)["message"] == 'namespaces "jhub" not found'


async def test_discovery(emu, core):
    async with client.ApiClient(client.Configuration(host=emu.url)) as api:
        version = await client.VersionApi(api).get_code()
        versions = await client.CoreApi(api).get_api_versions()
    assert version.major == "1" and version.git_version.startswith("v1.")
    assert versions.versions == ["v1"]
    resources = {r.name for r in (await core.get_api_resources()).resources}
    assert {"pods", "nodes", "events", "namespaces", "pods/status"} <= resources
    with pytest.raises(ApiException) as unknown:
        await core.list_namespaced_replication_controller("default")
    assert unknown.value.status == 404


async def test_request_log_lists_every_call(emu, core):
    emu.clear_requests()
    await core.list_namespaced_pod("default", label_selector="component=singleuser-server")
    await core.read_node("gpu-h100-a")
    assert emu.requests == [
        (
            "GET",
            "/api/v1/namespaces/default/pods",
            {"labelSelector": "component=singleuser-server"},
        ),
        ("GET", "/api/v1/nodes/gpu-h100-a", {}),
    ]


async def test_fault_injection(emu, core):
    fault = emu.inject_faults(path_prefix="/api/v1/nodes", status=500, count=2)
    for _ in range(2):
        with pytest.raises(ApiException) as failed:
            await core.list_node()
        assert failed.value.status == 500
        assert status_of(failed.value)["reason"] == "InternalError"
    assert len((await core.list_node()).items) == 3
    assert fault.hits == 2
    await core.list_namespaced_pod("default")  # other paths were never affected

    emu.inject_faults(
        path_prefix="/api/v1/namespaces/default/pods", status=503, count=None, method="POST"
    )
    for _ in range(3):
        with pytest.raises(ApiException) as unavailable:
            await core.create_namespaced_pod("default", make_pod("p"))
        assert unavailable.value.status == 503
    await core.list_namespaced_pod("default")  # GETs still pass
    emu.clear_faults()
    await core.create_namespaced_pod("default", make_pod("p"))


async def test_injected_delay_trips_client_timeouts(emu, core):
    import asyncio

    emu.inject_faults(path_prefix="/api/v1/nodes", status=None, delay=0.5, count=1)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(core.list_node(), 0.2)
    assert len((await core.list_node()).items) == 3


async def test_raw_http_details(emu):
    async with aiohttp.ClientSession() as http:
        # watch=1 works like watch=true
        params = {"watch": "1", "timeoutSeconds": "1", "fieldSelector": "metadata.name=gpu-h100-a"}
        async with http.get(f"{emu.url}/api/v1/nodes", params=params) as response:
            lines = (await response.read()).decode().splitlines()
        assert [json.loads(line)["type"] for line in lines] == ["ADDED"]
        # dryRun is refused, never silently persisted
        body = make_pod("dry")
        async with http.post(
            f"{emu.url}/api/v1/namespaces/default/pods?dryRun=All", json=body
        ) as response:
            assert response.status == 400
        assert emu.pod("dry") is None
        # a bad selector is a 400 Status
        async with http.get(f"{emu.url}/api/v1/pods", params={"fieldSelector": "spec.x=1"}) as r:
            assert (
                r.status == 400
                and (await r.json())["message"] == "field label not supported: spec.x"
            )
        async with http.get(f"{emu.url}/healthz") as response:
            assert await response.text() == "ok"


async def test_cluster_helpers_accept_kubernetes_asyncio_models(emu):
    node = client.V1Node(
        metadata=client.V1ObjectMeta(name="model-node", labels={"pool": "x"}),
        spec=client.V1NodeSpec(unschedulable=True),
        status=client.V1NodeStatus(allocatable={"cpu": "4", "memory": "8Gi", "pods": "10"}),
    )
    stored = emu.add_node(node)
    assert stored["metadata"]["labels"] == {"pool": "x"} and stored["spec"]["unschedulable"]
    assert {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"} in stored["spec"][
        "taints"
    ]
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="model-pod"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="i:1")]),
    )
    emu.clear_requests()
    created = emu.create_pod(pod, namespace="jhub")
    assert created["metadata"]["namespace"] == "jhub" and created["status"]["phase"] == "Pending"
    assert emu.requests == []  # not an HTTP request
    await emu.wait_for(lambda c: c.pod("model-pod", "jhub")["status"]["phase"] == "Running")
    emu.delete_pod("model-pod", "jhub", grace=0)
    assert emu.pod("model-pod", "jhub") is None
