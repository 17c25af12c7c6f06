"""``status`` and ``explain`` against a live (emulated) cluster over real HTTP, read-only.

The console script runs in a subprocess, as an admin runs it, with a kubeconfig pointing at
the emulated API server; the emulator's request log proves it only listed.
"""

from __future__ import annotations

import asyncio
import json

from cli_helpers import EXE, TEAMS_CONFIG

from mig_spawner.core.pods import hub_marks
from mig_spawner.demo.emulator import EmulatedCluster, load_cluster_spec

H100 = "NVIDIA-H100-80GB-HBM3"
SPEC = {
    "nodes": [
        {
            "name": "h100-a",
            "gpu": H100,
            "strategy": "mixed",
            "mig": [["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]],
        },
        {"name": "h100-b", "gpu": H100, "strategy": "mixed", "mig": [["7g.80gb"]]},
    ]
}


def hub_pod(name, user, team, resource, profile, requested):
    """A server pod as the hub marks it (in the config's namespace, jupyterhub)."""
    labels, annotations = hub_marks(
        hub="jupyterhub",
        user=user,
        team=team,
        tier="notebook",
        requested_profile=requested,
        granted_profile=profile,
        granted_product=H100,
        charge_mode="granted",
        node="",
    )
    return {
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "containers": [
                {"name": "notebook", "image": "x", "resources": {"limits": {resource: "1"}}}
            ]
        },
    }


async def run(*args) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(EXE), *map(str, args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_status_and_explain_read_the_live_cluster_and_only_list(tmp_path):
    async with EmulatedCluster(load_cluster_spec(SPEC), kubelet="stub") as cluster:
        cluster.create_namespace("jupyterhub")
        for user in ("alice", "bob"):
            pod = hub_pod(
                f"jupyter-{user}", user, "vision", "nvidia.com/mig-1g.10gb", "1g.10gb", "1g.10gb"
            )
            cluster.create_pod(pod, "jupyterhub")
        fallback = hub_pod(
            "jupyter-carol", "carol", "nlp", "nvidia.com/mig-2g.20gb", "2g.20gb", "1g.10gb"
        )
        cluster.create_pod(fallback, "jupyterhub")
        await cluster.wait_for(lambda c: all(p["spec"].get("nodeName") for p in c.pods), timeout=10)
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        cluster.clear_requests()

        code, out, err = await run(
            "status", "--kubeconfig", kubeconfig, "--config", TEAMS_CONFIG, "--json"
        )
        assert code == 0, err
        data = json.loads(out)
        assert data["source"] == f"the cluster at {cluster.url}"
        free = {t["profile"]: t["free"] for t in data["types"]}
        assert free == {"1g.10gb": 0, "2g.20gb": 0, "3g.40gb": 1, "7g.80gb": 1}
        cells = [c for n in data["nodes"] for g in n["gpus"] for c in g["cells"] if c["holder"]]
        carol = next(c for c in cells if c["holder"]["user"] == "carol")
        assert carol["profile"] == "2g.20gb" and carol["holder"]["fallback"] is True
        teams = {t["team"]: t for t in data["teams"]}
        assert teams["vision"]["limits"]["compute_slices"]["used"] == 2

        code, out, err = await run("status", "--kubeconfig", kubeconfig, "--map")
        assert code == 0, err
        assert "Servers on a fallback slice" in out and "carol" in out and "⤴1g.10gb" in out

        # explain decides on the live state: the 1g.10gb slices are full, so dave falls back.
        code, out, err = await run(
            "explain",
            "--kubeconfig",
            kubeconfig,
            "--config",
            TEAMS_CONFIG,
            "--user",
            "dave",
            "--tier",
            "notebook",
            "--json",
        )
        assert code == 0, err
        decision = json.loads(out)
        assert decision["admitted"] and decision["fallback"]
        assert decision["granted_profile"] == "3g.40gb" and decision["node"] == "h100-a"

        methods = {(m, path) for m, path, _ in cluster.requests}
        line = "/api/v1/namespaces/jupyterhub/configmaps/mig-spawner-line-jupyterhub"
        # status with --config also gets the hub's waiting line (one ConfigMap, by name); each
        # run also lists DRA's ResourceSlices (none here: no ResourceClaims list follows)
        slices = ("GET", "/apis/resource.k8s.io/v1/resourceslices")
        assert methods == {("GET", "/api/v1/nodes"), ("GET", "/api/v1/pods"), ("GET", line), slices}
        assert not any(q.get("watch") for _, _, q in cluster.requests)
        assert len(cluster.requests) == 10  # three runs, one list of each, one get


async def test_live_read_of_an_unreachable_or_failing_api_server_is_one_line(tmp_path):
    async with EmulatedCluster(load_cluster_spec(SPEC), kubelet="stub") as cluster:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        cluster.inject_faults(path_prefix="/api/v1/pods", status=403, count=5)
        code, out, err = await run("status", "--kubeconfig", kubeconfig)
        assert code == 2 and out == ""
        assert err.startswith("mig-spawner: error: listing pods: the API server answered 403")
        assert "need 'list pods' cluster-wide" in err and len(err.splitlines()) == 1
    # The cluster is gone now: connection refused.
    code, _, err = await run("status", "--kubeconfig", kubeconfig, "--timeout", "3")
    assert code == 2 and err.startswith("mig-spawner: error: cannot reach the API server at http")


async def test_a_big_cluster_is_read_in_pages(tmp_path, monkeypatch):
    from mig_spawner.cli import live

    nodes = [
        {"name": f"n{i}", "gpu": H100, "strategy": "mixed", "mig": [["7g.80gb"]]} for i in range(5)
    ]
    async with EmulatedCluster(load_cluster_spec({"nodes": nodes}), kubelet="stub") as cluster:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        cluster.clear_requests()
        monkeypatch.setattr(live, "PAGE_SIZE", 2)
        # load_live runs its own event loop, as the command does: give it a thread.
        snapshot = await asyncio.to_thread(live.load_live, kubeconfig=str(kubeconfig))
        assert sorted(n["metadata"]["name"] for n in snapshot.nodes) == [f"n{i}" for i in range(5)]
        node_lists = [q for _, path, q in cluster.requests if path == "/api/v1/nodes"]
        assert len(node_lists) == 3 and all(q.get("limit") == "2" for q in node_lists)
        assert "continue" not in node_lists[0] and all("continue" in q for q in node_lists[1:])
