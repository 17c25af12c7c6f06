"""Every pod manifest MIGSpawner generates is valid Kubernetes, strictly, for 1.28 and 1.33."""

from __future__ import annotations

import kubernetes_validate
import pytest
from hub_harness import H100, pods_of, spawn, wait_ready
from kubernetes_asyncio.client import ApiClient

VERSIONS = ("1.28", "1.33")
SINGLE_AND_WHOLE = {
    "nodes": [
        {"name": "s1", "gpu": H100, "strategy": "single", "mig": [["1g.10gb"] * 7]},
        {"name": "w1", "gpu": H100, "strategy": "single", "mig": "all-disabled"},
    ]
}
TAINTED_POOL = {
    "nodes": [
        {
            "name": "pool",
            "gpu": H100,
            "strategy": "mixed",
            "mig": [["1g.10gb"] * 7],
            "labels": {"pool": "research"},
            "taints": [{"key": "dedicated", "value": "research", "effect": "NoSchedule"}],
        }
    ]
}


async def manifest_of(app, user: str, server: str = "") -> dict:
    spawner = app.users[user].spawners[server]
    pod = await spawner.get_pod_manifest()
    async with ApiClient() as client:
        return client.sanitize_for_serialization(pod)


def validate(manifest: dict) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


async def test_mixed_strategy_manifest_validates(hub):
    app, _cluster = await hub()
    await spawn(app, "bob", {"tier": "notebook"})
    await wait_ready(app, "bob")
    manifest = await manifest_of(app, "bob")
    validate(manifest)
    limits = manifest["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/mig-1g.10gb"] == "1"


async def test_single_strategy_and_whole_gpu_manifests_validate(hub):
    app, cluster = await hub(spec=SINGLE_AND_WHOLE)
    await spawn(app, "bob", {"tier": "notebook"})
    await spawn(app, "alice", {"tier": "full", "team": "vision"})
    await wait_ready(app, "bob")
    await wait_ready(app, "alice")
    single = await manifest_of(app, "bob")
    whole = await manifest_of(app, "alice")
    for manifest in (single, whole):
        validate(manifest)
        assert manifest["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert single["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": f"{H100}-MIG-1g.10gb"}
    assert whole["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": H100}
    assert {p["spec"]["nodeName"] for p in pods_of(cluster)} == {"s1", "w1"}


async def test_tier_selector_and_tolerations_reach_the_pod(hub):
    tiers = {
        "research": {
            "display_name": "research pool",
            "compute_slices": 1,
            "node_selector": {"pool": "research"},
            "kubespawner_override": {"image": "example.org/research-notebook:1"},
            "tolerations": [
                {
                    "key": "dedicated",
                    "operator": "Equal",
                    "value": "research",
                    "effect": "NoSchedule",
                }
            ],
        }
    }
    app, _cluster = await hub(spec=TAINTED_POOL, tiers=tiers)
    r = await spawn(app, "bob", {"tier": "research"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob")
    manifest = await manifest_of(app, "bob")
    validate(manifest)
    assert manifest["spec"]["nodeSelector"] == {"pool": "research", "nvidia.com/gpu.product": H100}
    assert manifest["spec"]["containers"][0]["image"] == "example.org/research-notebook:1"
    assert {
        "key": "dedicated",
        "operator": "Equal",
        "value": "research",
        "effect": "NoSchedule",
    } in manifest["spec"]["tolerations"]


def test_validator_rejects_a_broken_manifest():
    """The check above can fail: a misspelt field is an error in strict mode."""
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": [{"name": "c", "image": "i", "resourcez": {}}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)
