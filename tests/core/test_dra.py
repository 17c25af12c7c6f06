"""core/dra.py: a tier's chain as a prioritized-list ResourceClaim, and reading back what the
API says (allocations, ResourceSlices) -- garbled objects give "not known", never raise."""

from __future__ import annotations

import pytest

from mig_spawner.core import dra
from mig_spawner.core.candidates import CandidateReport
from mig_spawner.core.cluster import ClusterState
from mig_spawner.core.nodes import SliceType
from mig_spawner.demo.controlplane.dradriver import resource_slices
from mig_spawner.demo.emulator.clusterfile import load_cluster_spec

H100 = "NVIDIA-H100-80GB-HBM3"
SPEC = load_cluster_spec(
    {"nodes": [{"name": "h", "gpu": H100, "mig": [["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]]}]}
)


def kind(profile: str, product: str = H100) -> SliceType:
    g, mem = profile.split(".")
    return SliceType("mixed", product, profile, int(g[:-1]), int(mem[:-2]))


def report(profile: str, step: int, outcome: str, product: str = H100) -> CandidateReport:
    return CandidateReport(kind(profile, product), step, 0, 2, outcome, "")


def test_claim_lists_the_chain_up_to_the_decided_step_as_first_available():
    candidates = [report("1g.10gb", 0, "full"), report("2g.20gb", 1, "granted")]
    steps = dra.chain_steps(candidates)
    assert steps == [dra.Step("1g.10gb", (H100,)), dra.Step("2g.20gb", (H100,))]
    claim = dra.claim_manifest("jupyter-bob-gpu-1", "jhub", steps, labels={"a": "b"})
    assert claim["apiVersion"] == "resource.k8s.io/v1" and claim["kind"] == "ResourceClaim"
    assert claim["metadata"] == {
        "name": "jupyter-bob-gpu-1",
        "namespace": "jhub",
        "labels": {"a": "b"},
    }
    (request,) = claim["spec"]["devices"]["requests"]
    assert request["name"] == "gpu" and "exactly" not in request
    subs = request["firstAvailable"]
    assert [s["name"] for s in subs] == ["s0-1g-10gb", "s1-2g-20gb"]
    assert {s["deviceClassName"] for s in subs} == {"mig.nvidia.com"}
    assert subs[0]["selectors"][0]["cel"]["expression"] == (
        "device.driver == 'gpu.nvidia.com' && "
        "device.attributes['gpu.nvidia.com'].profile == '1g.10gb' && "
        "device.attributes['gpu.nvidia.com'].productName in ['NVIDIA H100 80GB HBM3']"
    )
    assert dra.claim_steps(claim) == ["s0-1g-10gb", "s1-2g-20gb"]


def test_steps_leave_out_what_the_tier_or_quota_ruled_out_and_join_products():
    a100 = "NVIDIA-A100-SXM4-80GB"
    candidates = [
        report("1g.10gb", 0, "full"),
        report("1g.10gb", 0, "unusable", a100),
        report("1g.20gb", 1, "quota"),
        report("2g.20gb", 2, "beyond-max-steps"),
        report("3g.40gb", 3, "granted"),
    ]
    assert dra.chain_steps(candidates) == [
        dra.Step("1g.10gb", (H100, a100)),
        dra.Step("3g.40gb", (H100,)),
    ]
    # a 1g.10gb full only because other spawns in flight hold it: not this claim's to take
    promised = {kind("1g.10gb")}
    assert dra.chain_steps(candidates, promised) == [
        dra.Step("1g.10gb", (a100,)),  # the A100's is not promised to anyone
        dra.Step("3g.40gb", (H100,)),
    ]
    granted_promised = dra.chain_steps([report("1g.10gb", 0, "granted")], promised)
    assert granted_promised == [dra.Step("1g.10gb", (H100,))]  # its own: kept
    long = [report(f"{g}g.{g * 10}gb", g, "full") for g in range(1, 8)]
    long += [report("7g.80gb", 9, "full"), report("7g.96gb", 10, "granted")]
    steps = dra.chain_steps(long)
    assert len(steps) == dra.MAX_STEPS and steps[-1].profile == "7g.96gb"
    with pytest.raises(ValueError):
        dra.claim_manifest("x", "y", [])


def allocated(request: str, device="gpu-0-mig-2g20gb-14-0", pool="h", node="h") -> dict:
    claim = dra.claim_manifest("c", "jhub", [dra.Step("1g.10gb"), dra.Step("2g.20gb")])
    claim["status"] = {
        "allocation": {
            "devices": {
                "results": [
                    {"request": request, "driver": "gpu.nvidia.com", "pool": pool, "device": device}
                ]
            },
            "nodeSelector": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                ]
            },
        }
    }
    return claim


def test_the_allocation_says_which_step_the_scheduler_picked():
    got = dra.allocation(allocated("gpu/s1-2g-20gb"))
    assert got == dra.Allocation(
        1, "s1-2g-20gb", "gpu-0-mig-2g20gb-14-0", "h", "gpu.nvidia.com", "h"
    )
    assert dra.allocation(allocated("gpu/s0-1g-10gb")).step == 0
    assert dra.allocated_devices(allocated("gpu/s0-1g-10gb")) == [
        ("gpu.nvidia.com", "h", "gpu-0-mig-2g20gb-14-0")
    ]


@pytest.mark.parametrize(
    "claim",
    [
        None,
        "garbage",
        {},
        {"status": {"allocation": {"devices": {"results": "x"}}}},
        dra.claim_manifest("c", "jhub", [dra.Step("1g.10gb")]),  # not allocated yet
        allocated("gpu/s9-unknown"),
        allocated("other/s0-1g-10gb"),
        allocated("gpu/s1-2g-20gb", device=None),
    ],
)
def test_an_unreadable_allocation_is_not_known(claim):
    assert dra.allocation(claim) is None
    dra.allocated_devices(claim)  # never raises
    assert dra.unallocated_reason(claim) is None


def test_resource_slices_give_devices_per_node_and_garbled_ones_nothing():
    (slice_,) = resource_slices(SPEC)
    read = dra.read_slice(slice_)
    assert read.node == "h" and read.pool == "h"
    assert sorted(read.profiles.values()) == ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]
    assert dra.device_counts([read]) == {"h": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}}
    assert dra.unreadable([read]) is None
    for garbled in (None, [], {"spec": "x"}, {"spec": {"driver": "gpu.nvidia.com"}}):
        assert dra.read_slice(garbled) is None
    assert dra.read_slice({**slice_, "spec": {**slice_["spec"], "driver": "other.com"}}) is None


def test_a_driver_with_other_attribute_names_is_said_in_one_line():
    (slice_,) = resource_slices(SPEC, rename={"profile": "migProfile", "type": "kind"})
    read = dra.read_slice(slice_)
    assert read.profiles == {}
    line = dra.unreadable([read])
    assert line.startswith("no gpu.nvidia.com device has the attributes type and profile")
    assert "migProfile" in line and "kind" in line and "\n" not in line


def test_nodes_and_pods_reach_the_cache_as_devices_and_allocated_claims():
    """The cache (core/cluster.py) reads DRA devices and allocations as extended resources."""
    from mig_spawner.demo.emulator.clusterfile import NodeSpec  # noqa: F401
    from mig_spawner.demo.emulator.nodelabels import node_object

    node = node_object(SPEC.nodes[0])
    for key in ("capacity", "allocatable"):
        node["status"][key] = {
            k: v for k, v in node["status"][key].items() if not k.startswith("nvidia.com/")
        }
    node["metadata"].setdefault("uid", "n1")
    (slice_,) = resource_slices(SPEC)
    read = dra.read_slice(slice_)
    state = ClusterState()
    state.apply_node_event("ADDED", dra.node_with_devices(node, dra.device_counts([read])["h"]))
    assert {k.profile: n for k, n in state.nodes["h"].offers.items()} == {
        "1g.10gb": 2,
        "2g.20gb": 1,
        "3g.40gb": 1,
    }
    device = next(d for d, p in read.profiles.items() if p == "2g.20gb")
    claim = allocated("gpu/s1-2g-20gb", device=device)
    pod = {
        "metadata": {
            "name": "p",
            "namespace": "jhub",
            "annotations": {"mig-spawner/granted-profile": "3g.40gb"},
        },
        "spec": {
            "nodeName": "h",
            "resourceClaims": [{"name": "gpu", "resourceClaimName": "c"}],
            "containers": [{"name": "x", "resources": {"claims": [{"name": "gpu"}]}}],
        },
        "status": {"phase": "Running"},
    }
    profiles = {("gpu.nvidia.com", "h", d): p for d, p in read.profiles.items()}
    seen = dra.pod_with_claims(pod, {"jhub/c": claim}, profiles)
    assert seen["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/mig-2g.20gb": "1"}
    assert seen["metadata"]["annotations"]["mig-spawner/granted-profile"] == "2g.20gb"
    assert "limits" not in pod["spec"]["containers"][0]["resources"]  # not changed in place
    state.apply_pod_event("ADDED", seen)
    two_g = next(k for k in state.nodes["h"].offers if k.profile == "2g.20gb")
    assert state.free(state.nodes["h"], two_g) == 0
    # not allocated (yet), or garbled: the pod as it is
    assert dra.pod_with_claims(pod, {}, profiles) is pod
    assert dra.pod_with_claims("x", {}, profiles) == "x"
    assert dra.node_with_devices(None, {}) is None


def test_template_claims_are_found_through_the_pod_status():
    pod = {
        "spec": {"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "t"}]},
        "status": {"resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "p-gpu-x1"}]},
    }
    assert dra.pod_claim_names(pod) == ["p-gpu-x1"]
    assert dra.pod_claim_names({"spec": {"resourceClaims": "x"}}) == []


def test_names_and_notes():
    assert dra.step_name(3, "1g.10gb+me") == "s3-1g-10gb-me"
    assert dra.claim_name("jupyter-bob") == "jupyter-bob-gpu"
    assert len(dra.claim_name("x" * 300)) <= 253
    assert dra.product_name("NVIDIA-A100-SXM4-40GB") == "NVIDIA A100 SXM4 40GB"
    assert dra.allocated_note("1g.10gb", "2g.20gb", True) == (
        "The scheduler allocated a 2g.20gb slice: 1g.10gb was full, so you got 2g.20gb."
    )
    assert dra.allocated_note("1g.10gb", "1g.10gb", False) == (
        "The scheduler allocated your 1g.10gb slice."
    )


def test_reshape_gives_listed_objects_the_cache_s_shape_and_leaves_a_plain_cluster_alone():
    from mig_spawner.demo.emulator.nodelabels import node_object

    node = node_object(SPEC.nodes[0])
    (slice_,) = resource_slices(SPEC)
    device = next(d["name"] for d in slice_["spec"]["devices"] if "2g" in d["name"])
    claim = allocated("gpu/s1-2g-20gb", device=device)
    pod = {
        "metadata": {"name": "p", "namespace": "jhub"},
        "spec": {
            "nodeName": "h",
            "resourceClaims": [{"name": "gpu", "resourceClaimName": "c"}],
            "containers": [{"name": "x"}],
        },
    }
    nodes, pods = dra.reshape([node], [pod], [slice_], [claim])
    assert {
        k: v for k, v in nodes[0]["status"]["allocatable"].items() if k.startswith("nvidia.com/")
    } == {
        "nvidia.com/mig-1g.10gb": "2",
        "nvidia.com/mig-2g.20gb": "1",
        "nvidia.com/mig-3g.40gb": "1",
    }
    assert pods[0]["spec"]["containers"][0]["resources"]["limits"] == {
        "nvidia.com/mig-2g.20gb": "1"
    }
    assert dra.reshape([node], [pod], [], [claim]) == ([node], [pod])  # no DRA: unchanged
    assert dra.reshape([node], [pod], ["garbage"], ["garbage"]) == ([node], [pod])
