"""The spawn storm on both backends, side by side, on the real control plane.

One kube-apiserver / kube-scheduler / kube-controller-manager (``make k8s``), then for each
backend a fresh node agent (:mod:`mig_spawner.demo.controlplane.agent`, stub kubelet) on the
same cluster spec and a fresh ``jupyterhub`` process (MIGSpawner, the storm's tiers and
quotas, :mod:`benchmarks.storm`'s loop probe):

* ``device-plugin``: the nodes advertise ``nvidia.com/mig-*``; the hub decides, pins the
  pod to the node and requests the extended resource;
* ``dra``: the agent publishes ResourceSlices as NVIDIA's DRA driver does; the hub decides
  and checks the quota, then creates a prioritized-list ResourceClaim; the scheduler picks.

Every user spawns at once over real HTTP. Figures per backend: spawns per second (ready
servers / seconds until none is pending), double-bookings (device plugin: a node's pods
holding more of a resource than it has; DRA: a device allocated to two claims, or a node's
allocated devices above what its slices publish), quota overshoot, and decisions that had
to be retried (the hub's "deciding again" lines: a pod the scheduler could not place as
decided). No figure is asserted: the numbers are printed and returned.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from mig_spawner.core import dra
from mig_spawner.core.pods import Trust, parse_pod
from mig_spawner.demo.command import local_hub_lines
from mig_spawner.demo.controlplane import ControlPlane
from mig_spawner.demo.ports import free_port

from .storm import CATALOG, H100, REPO, _plane_lines, _probe_lines, _wait_http

BACKENDS = ("device-plugin", "dra")
TOKEN = "storm-benchmark-token"
_RESOURCE = "/apis/resource.k8s.io/v1"
LAYOUTS = [["1g.10gb"] * 7, ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]]


def _cluster(n_nodes: int) -> dict:
    return {
        "nodes": [
            {"name": f"h{i:03d}", "gpu": H100, "gpus": 2, "strategy": "mixed", "mig": LAYOUTS}
            for i in range(n_nodes)
        ]
    }


def _cleanup(plane: ControlPlane, spec: dict) -> None:
    for ns in ("storm",):
        plane.request("DELETE", f"/api/v1/namespaces/{ns}/pods?gracePeriodSeconds=0")
        plane.request("DELETE", f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims")
    plane.request("DELETE", "/apis/resource.k8s.io/v1/resourceslices")
    for node in spec["nodes"]:
        plane.request("DELETE", f"/api/v1/nodes/{node['name']}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _s, body = plane.request("GET", "/api/v1/namespaces/storm/pods")
        _s, claims = plane.request(
            "GET", "/apis/resource.k8s.io/v1/namespaces/storm/resourceclaims"
        )
        if not body.get("items") and not (claims or {}).get("items"):
            return
        time.sleep(0.2)


async def _warm_up(http: aiohttp.ClientSession, base: str, body: dict) -> int:
    """One spawn and stop before the storm, as a hub in production is warm (its watches
    listed, KubeSpawner's reflectors started); retried while the hub's first view of a
    just-registered node still refuses it. Returns the tries it took."""
    async with http.post(f"{base}/users", json={"usernames": ["warmup"]}) as r:
        assert r.status in (201, 409), await r.text()
    for attempt in range(1, 31):
        async with http.post(f"{base}/users/warmup/server", json=body) as r:
            started = r.status in (201, 202)
        while started:
            async with http.get(f"{base}/users/warmup") as r:
                server = (await r.json())["servers"].get("", {})
            if server.get("ready") or not server.get("pending"):
                started = bool(server.get("ready"))
                break
            await asyncio.sleep(0.2)
        if started:
            async with http.delete(f"{base}/users/warmup/server") as r:
                assert r.status in (202, 204), await r.text()
            await asyncio.sleep(2)
            return attempt
        await asyncio.sleep(1)
    raise RuntimeError("the warm-up spawn never started")


def _ready(plane: ControlPlane, n_nodes: int, backend: str) -> bool:
    """The agent's nodes are Ready and untainted (and, for DRA, their slices published)."""
    nodes = (plane.get("/api/v1/nodes") or {}).get("items") or []
    ready = [
        n
        for n in nodes
        if not any(
            t["key"].startswith("node.kubernetes.io/") for t in n["spec"].get("taints") or []
        )
    ]
    if len(ready) < n_nodes:
        return False
    if backend != "dra":
        return True
    slices = (plane.get(f"{_RESOURCE}/resourceslices") or {}).get("items") or []
    return len(slices) >= n_nodes


def _granted(plane: ControlPlane, backend: str, pods: list) -> Counter:
    """The slices the storm's running servers hold: by their pods' extended resources
    (device plugin) or by their claims' allocated devices (DRA)."""
    if backend == "device-plugin":
        return Counter(
            res.removeprefix(dra.MIG_PREFIX)
            for p in pods
            if p["spec"].get("nodeName")
            for c in p["spec"]["containers"]
            for res in (c.get("resources") or {}).get("limits", {})
            if res.startswith(dra.MIG_PREFIX)
        )
    slices = [dra.read_slice(s) for s in plane.get(f"{_RESOURCE}/resourceslices")["items"]]
    profiles = {
        (dra.DRIVER, s.pool, d): p for s in slices if s is not None for d, p in s.profiles.items()
    }
    claims = plane.get(f"{_RESOURCE}/namespaces/storm/resourceclaims")["items"]
    return Counter(profiles.get(d, "?") for c in claims for d in dra.allocated_devices(c))


def _double_booked(plane: ControlPlane, backend: str, pods: list, capacity: Counter) -> int:
    """Slices held twice: by pods' extended resources, or by two claims' allocations."""
    if backend == "device-plugin":
        held = Counter()
        for p in pods:
            if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            node = p["spec"].get("nodeName")
            for c in p["spec"]["containers"] if node else []:
                for res, n in (c.get("resources") or {}).get("limits", {}).items():
                    if res.startswith("nvidia.com/"):
                        held[(node, res)] += int(n)
        return sum(max(n - capacity[k], 0) for k, n in held.items())
    _s, body = plane.request("GET", "/apis/resource.k8s.io/v1/resourceclaims")
    devices = Counter(d for c in body["items"] for d in dra.allocated_devices(c))
    return sum(n - 1 for n in devices.values() if n > 1)


async def _storm(
    plane: ControlPlane, backend: str, n_users: int, n_nodes: int, quota: int, teams: int
) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"mig-storm-{backend}-"))
    spec = _cluster(n_nodes)
    (workdir / "cluster.yaml").write_text(json.dumps(spec))
    agent = subprocess.Popen(
        [sys.executable, "-m", "mig_spawner.demo.controlplane.agent", str(workdir / "cluster.yaml"),
         "--kubeconfig", str(plane.kubeconfig), "--kubelet", "stub",
         *(["--dra"] if backend == "dra" else [])],
        stdout=subprocess.DEVNULL, stderr=open(workdir / "agent.log", "w"),  # noqa: SIM115
        start_new_session=True,
    )  # fmt: skip
    users = [f"u{i:03d}" for i in range(n_users)]
    team_members = {f"team{t}": users[t::teams] for t in range(teams)}
    quotas = {t: {"compute_slices": quota} for t in team_members}
    hub_port = free_port()
    api = plane.url
    config = (
        local_hub_lines(port=hub_port, workdir=workdir)
        + _plane_lines("mig-spawner", quotas)
        + _probe_lines(workdir, api, users, team_members, False, workdir / "loop-lag.json")
        + f"c.KubeSpawner.k8s_api_ssl_ca_cert = {str(plane.ca)!r}\n"
        + f"c.MIGSpawner.backend = {backend!r}\n"
    )
    (workdir / "jupyterhub_config.py").write_text(config)
    env = dict(os.environ, KUBECONFIG=str(plane.kubeconfig))
    # this checkout's mig_spawner, not whichever the environment installed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(REPO / ".node" / "node_modules" / ".bin"), env["PATH"]])
    hub = None
    try:
        deadline = time.monotonic() + 60
        while not _ready(plane, n_nodes, backend):
            if time.monotonic() > deadline or agent.poll() is not None:
                raise RuntimeError((workdir / "agent.log").read_text()[-2000:])
            await asyncio.sleep(0.3)
        capacity = Counter()
        if backend == "device-plugin":
            for node in plane.get("/api/v1/nodes")["items"]:
                for res, n in node["status"].get("allocatable", {}).items():
                    if res.startswith("nvidia.com/"):
                        capacity[(node["metadata"]["name"], res)] = int(n)
        hub = subprocess.Popen(
            [str(Path(sys.executable).with_name("jupyterhub")), "-f",
             str(workdir / "jupyterhub_config.py")],
            cwd=workdir, env=env, stdout=subprocess.DEVNULL,
            stderr=open(workdir / "hub.log", "w"), start_new_session=True,  # noqa: SIM115
        )  # fmt: skip
        base = f"http://127.0.0.1:{hub_port}/hub/api"
        await _wait_http(f"{base}/")
        headers = {"Authorization": f"token {TOKEN}"}
        async with aiohttp.ClientSession(
            headers=headers, connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=600),
        ) as http:  # fmt: skip
            async with http.post(f"{base}/users", json={"usernames": users}) as r:
                assert r.status in (201, 409), await r.text()
            for team, members in team_members.items():
                async with http.post(f"{base}/groups/{team}/users", json={"users": members}) as r:
                    assert r.status == 200, await r.text()
            body = {"tier": "notebook"}
            warmup_tries = await _warm_up(http, base, body)

            async def spawn(user):
                async with http.post(f"{base}/users/{user}/server", json=body) as r:
                    return user, r.status

            t0 = time.perf_counter()
            results = await asyncio.gather(*(spawn(u) for u in users))
            accepted = [u for u, status in results if status in (201, 202)]
            ready, pending = set(), set(accepted)
            deadline = time.monotonic() + 300
            while pending and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                async with http.get(f"{base}/users?state=active&limit=200") as r:
                    listed = await r.json()
                servers = {u["name"]: u["servers"].get("", {}) for u in listed}
                ready = {n for n, srv in servers.items() if srv.get("ready")}
                pending = {n for n in accepted if servers.get(n, {}).get("pending")}
            settled = time.perf_counter() - t0
        pods = plane.get("/api/v1/namespaces/storm/pods")["items"]
        charged = Counter()
        for p in pods:
            info = parse_pod(p, Trust(namespaces=frozenset({"storm"}), hub="jupyterhub"), CATALOG)
            if info.managed and info.team and info.charge is not None and p["spec"].get("nodeName"):
                charged[info.team] += info.charge.compute_slices
        log = (workdir / "hub.log").read_text()
        granted = _granted(plane, backend, pods)
        return {
            "backend": backend,
            "users": n_users,
            "admitted": len(accepted),
            "ready": len(ready),
            "still_pending": len(pending),
            "settled_s": round(settled, 2),
            "spawns_per_s": round(len(ready) / settled, 2) if settled else 0,
            "double_booked_slices": _double_booked(plane, backend, pods, capacity),
            "quota_overshoot_compute_slices": sum(max(n - quota, 0) for n in charged.values()),
            "decisions_retried": log.count("deciding again"),
            "granted_profiles": dict(sorted(granted.items())),
            "warmup_tries": warmup_tries,
            "workdir": str(workdir),
        }
    finally:
        if hub is not None and hub.poll() is None:
            os.killpg(hub.pid, signal.SIGINT)
            try:
                hub.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(hub.pid, signal.SIGKILL)
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGTERM)
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(agent.pid, signal.SIGKILL)
        _cleanup(plane, spec)


async def run_backends(
    n_users: int = 40, n_nodes: int = 3, quota: int = 12, teams: int = 4
) -> dict:
    """Both backends' storms, one control plane, the same cluster spec and users."""
    with ControlPlane() as plane:
        plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "storm"}})
        account = "/api/v1/namespaces/storm/serviceaccounts/default"
        plane._wait("ServiceAccount storm/default", lambda: plane.get(account))
        out = {}
        for backend in BACKENDS:
            out[backend] = await _storm(plane, backend, n_users, n_nodes, quota, teams)
        return out


def table(results: dict) -> str:
    keys = ("users", "admitted", "ready", "still_pending", "settled_s", "spawns_per_s",
            "double_booked_slices", "quota_overshoot_compute_slices", "decisions_retried",
            "granted_profiles")  # fmt: skip
    rows = [f"{'':34}" + "".join(f"{b:>22}" for b in BACKENDS)]
    for key in keys:
        rows.append(f"{key:34}" + "".join(f"{results[b][key]!s:>22}" for b in BACKENDS))
    return "\n".join(rows)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    figures = asyncio.run(run_backends(n))
    print(table(figures))
    print(json.dumps(figures, indent=1))
