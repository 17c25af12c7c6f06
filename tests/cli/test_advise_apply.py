"""``mig-spawner advise --apply`` on the real control plane, with a mig-manager stand-in.

Nodes come from the node agent; a batch pod placed by the real kube-scheduler makes one node
busy; :mod:`migmanager` plays NVIDIA's mig-manager (pending, then success or failed, and
the node's new advertised MIG resources).
"""

from __future__ import annotations

import json

import pytest
from migmanager import CONFIG, STATE, MigManager

H100 = "NVIDIA-H100-80GB-HBM3"
SPEC = {
    "nodes": [
        {"name": "adv-a", "gpu": H100, "strategy": "mixed", "mig": [["7g.80gb"]]},
        {"name": "adv-b", "gpu": H100, "strategy": "mixed", "mig": [["7g.80gb"]]},
        {"name": "adv-busy", "gpu": H100, "strategy": "mixed", "mig": [["7g.80gb"]]},
    ]
}
FREE = ["adv-a", "adv-b"]


def demand(tmp_path):
    """Many concurrent 1g.10gb sessions: 7 × 1g.10gb beats one 7g on every node."""
    path = tmp_path / "demand.jsonl"
    lines = [
        json.dumps({"t": 1000 + i, "profile": "1g.10gb", "duration_s": 3600, "team": "vision"})
        for i in range(20)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def lab(real_cluster):
    cluster = real_cluster(SPEC)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "train-0"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": "adv-busy"},
            "containers": [
                {
                    "name": "job",
                    "image": "busybox",
                    "resources": {"limits": {"nvidia.com/mig-7g.80gb": "1"}},
                }
            ],
        },
    }
    cluster.create_pod(pod, namespace="research")
    cluster.wait_for(
        lambda c: (p := c.pod("train-0", "research")) and p["status"].get("phase") == "Running",
        what="the batch pod running on adv-busy",
    )
    return cluster


def labels(lab, name):
    return lab.node(name)["metadata"]["labels"]


def advise(cli, lab, tmp_path, *extra):
    return cli("advise", "--kubeconfig", lab.kubeconfig, "--demand", demand(tmp_path), *extra)


def test_apply_relabels_free_nodes_waits_for_success_and_skips_busy_ones(lab, cli, tmp_path):
    before = {n: labels(lab, n).get(CONFIG) for n in [*FREE, "adv-busy"]}
    dry = advise(cli, lab, tmp_path, "--json")
    assert dry.code == 0, dry.err
    out = dry.json
    assert out["nodes"]["adv-busy"]["kept"] == "running GPU pods"
    assert [out["nodes"][n]["mig_config"] for n in FREE] == ["all-1g.10gb"] * 2
    assert out["nodes"]["adv-a"]["layout"] == [["1g.10gb"] * 7]
    # Without --apply nothing changed on the cluster.
    assert {n: labels(lab, n).get(CONFIG) for n in before} == before
    config_yaml = out["configmap"]["data"]["config.yaml"]
    with MigManager(lab.plane, [*FREE, "adv-busy"], config_yaml, delay=1.5) as manager:
        r = advise(cli, lab, tmp_path, "--apply", "--yes")
    assert r.code == 0, r.err
    for name in FREE:
        node = lab.node(name)
        assert node["metadata"]["labels"][CONFIG] == "all-1g.10gb"
        assert node["metadata"]["labels"][STATE] == "success"
        assert node["status"]["allocatable"].get("nvidia.com/mig-1g.10gb") == "7"
        assert "nvidia.com/mig-7g.80gb" not in node["status"]["allocatable"]
        assert not node["spec"].get("unschedulable")  # uncordoned after
        assert f"node {name}: cordoned" in r.err and f"node {name}: uncordoned" in r.err
        assert f"node {name}: {STATE}=pending" in r.err
    assert labels(lab, "adv-busy").get(CONFIG) == before["adv-busy"]
    assert ("adv-busy", "pending") not in manager.states
    assert [s for s in manager.states if s[0] == "adv-a"] == [
        ("adv-a", "pending"),
        ("adv-a", "success"),
    ]
    again = advise(cli, lab, tmp_path, "--json")  # the new layout is the current one now
    assert again.json["commands"] == []


def test_apply_stops_at_the_first_failure_with_the_nodes_state(lab, cli, tmp_path):
    dry = advise(cli, lab, tmp_path, "--json")
    config_yaml = dry.json["configmap"]["data"]["config.yaml"]
    with MigManager(lab.plane, FREE, config_yaml, fail={"all-1g.10gb"}):
        r = advise(cli, lab, tmp_path, "--apply", "--yes")
    assert r.code == 1
    assert f"node adv-a: {STATE}=failed; stopped here" in r.err
    assert lab.node("adv-a")["spec"].get("unschedulable") is True  # left cordoned
    assert labels(lab, "adv-b").get(CONFIG) != "all-1g.10gb"  # never reached
    assert "adv-b" not in r.err.split("stopped here")[-1]
    assert not lab.node("adv-b")["spec"].get("unschedulable")
