"""``mig-spawner explain --live`` / ``status`` under DRA, on the real control plane: the live
read takes the nodes' MIG devices from ResourceSlices and the pods' slices from their
allocated claims, as the hub's view does (core/dra.py's reshape)."""

from __future__ import annotations

import asyncio

from mig_spawner.cli import live
from mig_spawner.cli.snapshot import build_state

H100 = "NVIDIA-H100-80GB-HBM3"
SPEC = {
    "nodes": [{"name": "h", "gpu": H100, "mig": [["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]]}]
}


async def test_a_live_read_under_dra_sees_devices_and_allocated_claims(real_cluster):
    cluster = real_cluster(SPEC, dra=True)
    cel = "device.attributes['gpu.nvidia.com'].profile == '1g.10gb'"
    request = {
        "name": "gpu",
        "exactly": {
            "deviceClassName": "mig.nvidia.com",
            "selectors": [{"cel": {"expression": cel}}],
        },
    }
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "job-gpu"},
        "spec": {"devices": {"requests": [request]}},
    }
    path = "/apis/resource.k8s.io/v1/namespaces/research/resourceclaims"
    status, body = cluster.plane.request("POST", path, claim)
    assert status == 201, body
    cluster.create_pod(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "job"}, "spec": {
            "resourceClaims": [{"name": "gpu", "resourceClaimName": "job-gpu"}],
            "containers": [{"name": "job", "image": "busybox",
                            "resources": {"claims": [{"name": "gpu"}]}}]}},
        namespace="research",
    )  # fmt: skip
    cluster.wait_for(
        lambda c: (c.pod("job", "research") or {}).get("spec", {}).get("nodeName"),
        what="the job bound",
    )
    snapshot = await asyncio.to_thread(live.load_live, kubeconfig=str(cluster.kubeconfig))
    state, problems = build_state(snapshot)
    assert problems == []
    node = state.nodes["h"]
    free = {k.profile: state.free(node, k) for k in node.offers}
    assert free == {"1g.10gb": 1, "2g.20gb": 1, "3g.40gb": 1}
    (job,) = [p for p in state.pods.values() if p.key.startswith("research/")]
    assert dict(job.requests) == {"nvidia.com/mig-1g.10gb": 1} and job.node == "h"
