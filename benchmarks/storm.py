"""A spawn storm: N users spawning at once through a real JupyterHub over real HTTP.

The emulated cluster (``python -m mig_spawner.demo.emulator``, stub kubelet) and a real
``jupyterhub`` run as their own processes, exactly as in the demo. An aiohttp client
fires every ``POST /hub/api/users/<name>/server`` at once (truly concurrent: one
connection each). Inside the hub a loop-lag probe (started by the first spawn through
``pre_spawn_hook``) records the longest event-loop stall. Afterwards the pods are read
from the cluster's API: slices double-booked (a node holding more of a resource than it
has) and quota overshoots (a team's charged compute slices above its quota) must be 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import aiohttp

from mig_spawner.core.catalog import default_catalog
from mig_spawner.core.pods import Trust, parse_pod
from mig_spawner.demo.command import local_hub_lines
from mig_spawner.demo.ports import free_port

CATALOG = default_catalog()

H100 = "NVIDIA-H100-80GB-HBM3"
TOKEN = "storm-benchmark-token"
SCOPES = ["admin:users", "admin:groups", "servers", "admin:servers"]
TIERS = {
    "notebook": {
        "display_name": "1g",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "max_compute_slices": 3,
    }
}


#: Plain KubeSpawner's equivalent of :data:`TIERS`, as an admin would write it without
#: mig-spawner: one profile per tier, asking for the tier's preferred MIG slice (no quota,
#: no fallback: a pod that finds no slice waits, Pending, until ``start_timeout``)
PROFILES = [
    {
        "display_name": "1g",
        "slug": "notebook",
        "default": True,
        "kubespawner_override": {"extra_resource_limits": {"nvidia.com/mig-1g.10gb": "1"}},
    }
]
PLANES = ("mig-spawner", "kubespawner")
REPO = Path(__file__).resolve().parents[1]


def _plane_lines(plane: str, quotas: dict) -> str:
    if plane == "kubespawner":
        return textwrap.dedent(
            f"""\
            c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
            c.KubeSpawner.profile_list = {PROFILES!r}
            """
        )
    return textwrap.dedent(
        f"""\
        c.MIGSpawner.tiers = {TIERS!r}
        c.MIGSpawner.team_quotas = {quotas!r}
        """
    )


def _config(
    workdir: Path,
    api: str,
    port: int,
    users: list[str],
    teams: dict,
    quotas: dict,
    debug: bool,
    plane: str = "mig-spawner",
) -> str:
    probe = workdir / "loop-lag.json"
    return (
        local_hub_lines(port=port, workdir=workdir)
        + _plane_lines(plane, quotas)
        + _probe_lines(workdir, api, users, teams, debug, probe)
    )


def _probe_lines(workdir: Path, api: str, users, teams, debug: bool, probe: Path) -> str:
    return textwrap.dedent(
        f"""\
        import asyncio, json, logging, os, time
        c.JupyterHub.concurrent_spawn_limit = 0
        c.JupyterHub.active_server_limit = 0
        c.JupyterHub.authenticator_class = "dummy"
        c.Authenticator.allowed_users = set({users!r})
        c.JupyterHub.load_groups = {{t: {{"users": m}} for t, m in {teams!r}.items()}}
        c.JupyterHub.services = [{{"name": "storm", "api_token": {TOKEN!r}}}]
        c.JupyterHub.load_roles = [{{"name": "storm", "scopes": {SCOPES!r}, "services": ["storm"]}}]
        c.KubeSpawner.k8s_api_host = {api!r}
        c.KubeSpawner.namespace = "storm"
        c.KubeSpawner.storage_pvc_ensure = False
        c.KubeSpawner.start_timeout = 300
        c.KubeSpawner.http_timeout = 300
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from benchmarks import hubprobe

        _lag = {{"max_ms": 0.0, "samples": 0, "debug": None, "slow_callbacks": 0,
                "max_callback_ms": 0.0, "slowest": ""}}

        class _SlowCallbacks(logging.Handler):
            # asyncio debug mode: "Executing %s took %.3f seconds" for each slow callback
            def emit(self, record):
                if record.msg.startswith("Executing") and len(record.args) == 2:
                    _lag["slow_callbacks"] += 1
                    ms = record.args[1] * 1000
                    where = str(record.args[0])
                    coro = where.split("coro=<", 1)[-1].split(" running at ", 1)
                    at = coro[1].split(">", 1)[0].rsplit("/", 1)[-1] if len(coro) > 1 else ""
                    key = coro[0][:60] + " @ " + at[:40]
                    _lag.setdefault("by_place", {{}})
                    _lag["by_place"][key] = max(_lag["by_place"].get(key, 0), round(ms))
                    if ms > _lag["max_callback_ms"]:
                        _lag["max_callback_ms"] = ms
                        _lag["slowest"] = str(record.args[0])[:300]
                    _dump()

        def _dump():  # whole or not at all: the client may read it at any time
            with open({str(probe)!r} + ".tmp", "w") as f:
                json.dump(dict(_lag, hub=hubprobe.summary()), f)
            os.replace({str(probe)!r} + ".tmp", {str(probe)!r})

        logging.getLogger("asyncio").addHandler(_SlowCallbacks())
        async def _probe():
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                lag = (time.perf_counter() - t - 0.01) * 1000
                if _final.exists():  # the client wants the figures now
                    _final.unlink()
                    _dump()
                if _reset.exists():  # the client starts the measured storm
                    _reset.unlink()
                    hubprobe.start()
                    if {debug!r}:
                        _prof.enable()
                    _lag.update(max_ms=0.0, samples=0, slow_callbacks=0, max_callback_ms=0.0,
                                slowest="", by_place={{}})
                    continue
                _lag["samples"] += 1
                if lag > _lag["max_ms"]:
                    _lag["max_ms"] = lag
                    _dump()
                elif _lag["samples"] % 100 == 0:
                    _dump()
                    if {debug!r}:
                        _prof.dump_stats({str(workdir / "hub.prof")!r})
        _task = []
        import cProfile, pathlib
        _prof = cProfile.Profile()
        _reset = pathlib.Path({str(workdir / "reset-probe")!r})
        _final = pathlib.Path({str(workdir / "final-probe")!r})
        def _start_probe(spawner):
            if not _task:
                loop = asyncio.get_running_loop()
                loop.slow_callback_duration = 0.05  # logged in asyncio debug mode
                if {debug!r}:
                    loop.set_debug(True)
                _lag["debug"] = loop.get_debug()
                _task.append(loop.create_task(_probe()))
        c.Spawner.pre_spawn_hook = _start_probe
        """
    )


async def _wait_http(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f}s")


def _hub_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_storm(
    n_users: int = 300,
    n_nodes: int = 24,
    quota: int = 40,
    teams: int = 4,
    debug: bool = False,
    plane: str = "mig-spawner",
    only: list[str] | None = None,
) -> dict:
    """``debug``: asyncio debug mode in the hub, slow callbacks (> 50 ms) in its log.

    ``plane``: ``"mig-spawner"`` or ``"kubespawner"`` (plain KubeSpawner with
    :data:`PROFILES`). ``only``: spawn just these of the ``n_users`` users (the others
    exist, in the same teams, but do not spawn).

    The cluster: ``n_nodes`` nodes of 2 H100s each (one 7 x 1g, one 1g+1g+2g+3g), so that
    with the default quotas the teams' quotas, not the 1g slices, bound what is admitted
    (4 teams x 40 = 160 slices; 9 x 24 = 216 1g slices): the servers mig-spawner admits
    would all find a 1g slice under plain KubeSpawner too.
    """
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES}, not {plane!r}")
    workdir = Path(tempfile.mkdtemp(prefix=f"mig-storm-{plane}-"))
    layouts = [["1g.10gb"] * 7, ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]]
    nodes = [
        {"name": f"h{i:03d}", "gpu": H100, "gpus": 2, "strategy": "mixed", "mig": layouts}
        for i in range(n_nodes)
    ]
    (workdir / "cluster.yaml").write_text(json.dumps({"nodes": nodes}))
    capacity = Counter()
    everyone = [f"u{i:03d}" for i in range(n_users)]
    users = everyone if only is None else [u for u in everyone if u in set(only)]
    body = {"tier": "notebook"} if plane == "mig-spawner" else {"profile": "notebook"}
    team_of = {u: f"team{i % teams}" for i, u in enumerate(everyone)}
    team_members = {
        f"team{t}": [u for u in everyone if team_of[u] == f"team{t}"] for t in range(teams)
    }
    quotas = {t: {"compute_slices": quota} for t in team_members}
    api_port, hub_port = free_port(), free_port()
    env = dict(os.environ, KUBECONFIG=str(workdir / "kubeconfig"))
    node_bin = REPO / ".node" / "node_modules" / ".bin"  # `make install`'s proxy
    env["PATH"] = os.pathsep.join([str(node_bin), env.get("PATH", "")])
    hub_log = open(workdir / "hub.log", "w")  # noqa: SIM115 (closed in finally)
    emu = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mig_spawner.demo.emulator",
            str(workdir / "cluster.yaml"),
            "--kubelet",
            "stub",
            "--port",
            str(api_port),
            "--kubeconfig",
            str(workdir / "kubeconfig"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{api_port}"
    hub = None
    try:
        await _wait_http(f"{api}/api/v1/nodes")
        (workdir / "jupyterhub_config.py").write_text(
            _config(workdir, api, hub_port, everyone, team_members, quotas, debug, plane)
        )
        hub = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("jupyterhub")),
                "-f",
                str(workdir / "jupyterhub_config.py"),
            ],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=hub_log,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{hub_port}/hub/api"
        await _wait_http(f"{base}/")
        headers = {"Authorization": f"token {TOKEN}"}
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(
            headers=headers, connector=connector, timeout=aiohttp.ClientTimeout(total=600)
        ) as http:
            async with http.get(f"{api}/api/v1/nodes") as r:
                for node in (await r.json())["items"]:
                    for res, n in node["status"]["allocatable"].items():
                        if res.startswith("nvidia.com/"):
                            capacity[(node["metadata"]["name"], res)] = int(n)
            async with http.post(f"{base}/users", json={"usernames": everyone}) as r:
                assert r.status in (201, 409), await r.text()
            for team, members in team_members.items():
                async with http.post(f"{base}/groups/{team}/users", json={"users": members}) as r:
                    assert r.status == 200, await r.text()
            # Warm-up: one spawn and stop, so imports, the reflectors and the cluster watch
            # start before the storm (a hub in production is warm); its stall is reported.
            async with http.post(f"{base}/users", json={"usernames": ["warmup"]}) as r:
                assert r.status in (201, 409), await r.text()
            t = time.perf_counter()
            async with http.post(f"{base}/users/warmup/server", json=body) as r:
                assert r.status in (201, 202), await r.text()
            while True:
                async with http.get(f"{base}/users/warmup") as r:
                    if (await r.json())["servers"].get("", {}).get("ready"):
                        break
                await asyncio.sleep(0.2)
            warmup_s = time.perf_counter() - t
            async with http.delete(f"{base}/users/warmup/server") as r:
                assert r.status in (202, 204), await r.text()
            await asyncio.sleep(2)
            cold = json.loads((workdir / "loop-lag.json").read_text())
            (workdir / "reset-probe").touch()
            await asyncio.sleep(0.5)
            cpu0 = _hub_cpu_s(hub.pid)
            in_flight = max_in_flight = 0

            async def spawn(user):
                nonlocal in_flight, max_in_flight
                in_flight += 1
                max_in_flight = max(max_in_flight, in_flight)
                try:
                    async with http.post(f"{base}/users/{user}/server", json=body) as r:
                        return user, r.status, await r.text()
                finally:
                    in_flight -= 1

            t0 = time.perf_counter()
            results = await asyncio.gather(*(spawn(u) for u in users))
            t_answered = time.perf_counter() - t0
            accepted = [u for u, status, _ in results if status in (201, 202)]
            statuses = Counter(status for _, status, _ in results)
            # A 202 means "still pending after slow_spawn_timeout": the decision may yet
            # refuse it. Follow every server until none is pending.
            ready, pending = set(), set(accepted)
            deadline = time.monotonic() + 420
            # The polls are load on the hub too (JupyterHub serialises every user it
            # lists), the same per second in both planes: once a second, and only the
            # users with a pending or ready server (`state=active`).
            while pending and time.monotonic() < deadline:
                await asyncio.sleep(1)
                listed = []
                for offset in range(0, n_users + 2, 200):  # the API's page limit is 200
                    url = f"{base}/users?state=active&offset={offset}&limit=200"
                    async with http.get(url) as r:
                        listed += await r.json()
                servers = {u["name"]: u["servers"].get("", {}) for u in listed}
                ready = {n for n, srv in servers.items() if srv.get("ready")}
                pending = {n for n in accepted if servers.get(n, {}).get("pending")}
            t_ready = time.perf_counter() - t0
            hub_cpu_s = _hub_cpu_s(hub.pid) - cpu0
            (workdir / "final-probe").touch()
            await asyncio.sleep(0.5)
            refused_later = [u for u in accepted if u not in ready and u not in pending]
            async with http.get(f"{api}/api/v1/pods") as r:
                pods = (await r.json())["items"]
        held, charged, by_resource = Counter(), Counter(), Counter()
        for p in pods:
            if p["status"].get("phase") in ("Succeeded", "Failed") or not p["spec"].get("nodeName"):
                continue
            for c in p["spec"]["containers"]:
                for res, n in c.get("resources", {}).get("limits", {}).items():
                    if res.startswith("nvidia.com/"):
                        held[(p["spec"]["nodeName"], res)] += int(n)
                        if p["metadata"]["namespace"] == "storm":
                            by_resource[res] += int(n)
            # the charge as the core derives it (from what the pod requests, never a label)
            info = parse_pod(p, Trust(namespaces=frozenset({"storm"}), hub="jupyterhub"), CATALOG)
            if info.managed and info.team and info.charge is not None:
                charged[info.team] += info.charge.compute_slices
        double_booked = sum(max(n - capacity[k], 0) for k, n in held.items())
        overshoot = sum(
            max(n - quotas[t]["compute_slices"], 0) for t, n in charged.items() if t in quotas
        )
        lag_file = workdir / "loop-lag.json"
        lag = (
            json.loads(lag_file.read_text())
            if lag_file.exists()
            else {"max_ms": None, "samples": 0}
        )
        return {
            "plane": plane,
            "users": len(users),
            "ready_users": sorted(ready),
            "hub_cpu_s": hub_cpu_s,
            "hub_profile": lag.get("hub"),
            "slices": sum(capacity.values()),
            "team_quota_compute_slices": quota,
            "teams": teams,
            "max_requests_in_flight": max_in_flight,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "accepted_by_post": len(accepted),
            "refused_by_post": len(users) - len(accepted),
            "refused_after_202": len(refused_later),
            "still_pending_at_timeout": len(pending),
            "ready": len(ready),
            "answered_s": t_answered,
            "settled_s": t_ready,
            "spawns_per_s": len(ready) / t_ready if t_ready else 0,
            "double_booked_slices": double_booked,
            "storm_pods_gpu_resources": dict(sorted(by_resource.items())),
            "quota_overshoot_compute_slices": overshoot,
            "longest_loop_stall_ms": lag["max_ms"],
            "loop_lag_samples": lag.get("samples"),
            "warmup_spawn_s": warmup_s,
            "warmup_longest_loop_stall_ms": cold["max_ms"],
            "asyncio_debug": lag.get("debug"),
            "slow_callbacks_over_50ms": lag.get("slow_callbacks"),
            "longest_callback_ms": lag.get("max_callback_ms"),
            "slowest_callback": lag.get("slowest"),
            "slow_callbacks_by_place_ms": lag.get("by_place"),
            "workdir": str(workdir),
        }
    finally:
        hub_log.close()
        for proc in (hub, emu):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 300
    print(json.dumps(asyncio.run(run_storm(n, debug="--debug" in sys.argv)), indent=1))
