"""hub/dra.py's DraCache: whatever order the four watches deliver Nodes, Pods,
ResourceSlices and ResourceClaims in, the cache ends up with the same devices and holds;
garbled objects are refused as the watch expects (ValueError), never a crash."""

from __future__ import annotations

import itertools

import pytest

from mig_spawner.core.cluster import ClusterState
from mig_spawner.demo.controlplane.dradriver import resource_slices
from mig_spawner.demo.emulator.clusterfile import load_cluster_spec
from mig_spawner.demo.emulator.nodelabels import node_object
from mig_spawner.hub.dra import DraCache

H100 = "NVIDIA-H100-80GB-HBM3"
SPEC = load_cluster_spec(
    {"nodes": [{"name": "h", "gpu": H100, "mig": [["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]]}]}
)
(SLICE,) = resource_slices(SPEC)
DEVICE = next(d["name"] for d in SLICE["spec"]["devices"] if "2g" in d["name"])
NODE = node_object(SPEC.nodes[0])
for _key in ("capacity", "allocatable"):
    NODE["status"][_key] = {
        k: v for k, v in NODE["status"][_key].items() if not k.startswith("nvidia.com/")
    }
CLAIM = {
    "metadata": {"name": "c", "namespace": "research"},
    "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {}}]}},
    "status": {
        "allocation": {
            "devices": {
                "results": [
                    {"request": "gpu", "driver": "gpu.nvidia.com", "pool": "h", "device": DEVICE}
                ]
            }
        }
    },
}
POD = {
    "metadata": {"name": "job", "namespace": "research", "uid": "u1"},
    "spec": {
        "nodeName": "h",
        "resourceClaims": [{"name": "gpu", "resourceClaimName": "c"}],
        "containers": [{"name": "job", "resources": {"claims": [{"name": "gpu"}]}}],
    },
    "status": {"phase": "Running"},
}
EVENTS = [
    ("nodes", NODE),
    ("pods", POD),
    ("resourceslices", SLICE),
    ("resourceclaims", CLAIM),
]


def free(state: ClusterState) -> dict[str, int]:
    node = state.nodes["h"]
    return {k.profile: state.free(node, k) for k in node.offers}


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_every_order_of_events_gives_the_same_cache(order):
    state = ClusterState()
    cache = DraCache(state, resource_api=None)
    for i in order:
        kind, obj = EVENTS[i]
        cache.applier(kind)("ADDED", obj)
    assert free(state) == {"1g.10gb": 2, "2g.20gb": 0, "3g.40gb": 1}
    assert dict(state.pods["research/job"].requests) == {"nvidia.com/mig-2g.20gb": 1}
    cache.applier("resourceclaims")("DELETED", CLAIM)  # deallocated: the device is free
    assert free(state)["2g.20gb"] == 1


def test_a_relist_drops_what_is_gone_and_garbled_objects_are_refused():
    state = ClusterState()
    cache = DraCache(state, resource_api=None)
    for kind, obj in EVENTS:
        cache.applier(kind)("ADDED", obj)
    assert cache.replacer("resourceslices")([]) == []
    assert state.nodes["h"].offers == {}  # no devices published: nothing offered
    problems = cache.replacer("resourceclaims")([{"metadata": {}}, "garbage"])
    assert len(problems) == 2 and "research/c" not in cache.claims
    with pytest.raises(ValueError):
        cache.applier("resourceslices")("ADDED", {"spec": {}})
    assert cache.problem() is None


def test_a_driver_with_other_attribute_names_is_the_cache_s_problem():
    (renamed,) = resource_slices(SPEC, rename={"profile": "migProfile"})
    cache = DraCache(ClusterState(), resource_api=None)
    cache.applier("resourceslices")("ADDED", renamed)
    assert "migProfile" in cache.problem()
