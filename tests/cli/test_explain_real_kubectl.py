"""`mig-spawner explain` on a real `kubectl get nodes,pods -A -o json` (Debian's kubectl)
taken from the real control plane, with GPU nodes from the node agent and pods placed by
the real kube-scheduler."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from cli_helpers import TEAMS_CONFIG

H100 = "NVIDIA-H100-80GB-HBM3"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
SPEC = {
    "nodes": [
        {"name": "lab-h100-a", "gpu": H100, "strategy": "mixed", "mig": [["1g.10gb"] * 7]},
        {
            "name": "lab-h100-b",
            "gpu": H100,
            "strategy": "mixed",
            "mig": [["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]],
        },
    ]
}


def kubectl_snapshot(cluster, tmp_path):
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", str(cluster.kubeconfig), "get", "nodes,pods", "-A", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    path = tmp_path / "snapshot.json"
    path.write_text(out)
    return path, json.loads(out)


def batch_pod(name: str, resource: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"job": "sweep"}},
        "spec": {
            "containers": [
                {"name": "job", "image": "busybox", "resources": {"limits": {resource: "1"}}}
            ]
        },
    }


@pytest.fixture
def lab(real_cluster):
    if not shutil.which(KUBECTL):
        pytest.skip("kubectl is not installed (apt-get install kubectl)")
    return real_cluster(SPEC)


def test_explain_reads_a_real_kubectl_snapshot(lab, explain, tmp_path):
    path, data = kubectl_snapshot(lab, tmp_path)
    kinds = {i["kind"] for i in data["items"]}
    assert "Node" in kinds
    out = explain(str(path), user="dave", tier="notebook").json
    assert out["admitted"] is True and out["granted_profile"] == "1g.10gb"
    assert out["node_selector"] == {"nvidia.com/gpu.product": H100}
    assert out["candidates"][0]["free"] == 9 and out["candidates"][0]["total"] == 9


def test_explain_counts_pods_the_real_scheduler_placed(lab, explain, cli, tmp_path):
    for i in range(9):  # every 1g.10gb on both GPUs, held by batch jobs
        lab.create_pod(batch_pod(f"sweep-{i}", "nvidia.com/mig-1g.10gb"), namespace="research")
    lab.wait_for(
        lambda c: (
            sum(
                1
                for p in c.pods
                if p["metadata"]["namespace"] == "research"
                and p["status"].get("phase") == "Running"
            )
            == 9
        ),
        what="nine batch pods running",
    )
    path, _ = kubectl_snapshot(lab, tmp_path)
    out = explain(str(path), user="dave", tier="notebook").json
    assert out["admitted"] is True and out["fallback"] is True
    assert (out["requested_profile"], out["granted_profile"]) == ("1g.10gb", "2g.20gb")
    assert out["node"] == "lab-h100-b"
    assert out["candidates"][0]["reason"] == "none free (0 of 9)"

    # the live read (list only, through the same admin kubeconfig) decides the same
    live = cli(
        "explain",
        "--kubeconfig",
        lab.kubeconfig,
        "--config",
        TEAMS_CONFIG,
        "--user",
        "dave",
        "--tier",
        "notebook",
        "--json",
    )
    assert live.code == 0, live.err
    assert live.json == out
