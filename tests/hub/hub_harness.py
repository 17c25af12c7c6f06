"""Helpers and constants for hub-level tests.

A real JupyterHub (pytest-jupyterhub's MockHub) with MIGSpawner talks through the real
kubernetes_asyncio client over HTTP to the emulated cluster (stub kubelet: each pod answers
HTTP on its own 127.0.0.N)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import aiohttp
from jupyterhub.tests.utils import api_request, auth_header, public_host, public_url, ujoin

from mig_spawner import MIGSpawner

ROOT = Path(__file__).resolve().parents[2]
_NODE_BIN = ROOT / ".node" / "node_modules" / ".bin"
if _NODE_BIN.is_dir() and str(_NODE_BIN) not in os.environ["PATH"]:
    os.environ["PATH"] = f"{_NODE_BIN}{os.pathsep}{os.environ['PATH']}"

H100 = "NVIDIA-H100-80GB-HBM3"
#: Two H100s: one cut into 7 × 1g.10gb, one "balanced" (2 × 1g.10gb, 2g.20gb, 3g.40gb).
TWO_H100 = {
    "nodes": [
        {"name": "h100-a", "gpu": H100, "strategy": "mixed", "mig": [["1g.10gb"] * 7]},
        {
            "name": "h100-b",
            "gpu": H100,
            "strategy": "mixed",
            "mig": [["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]],
        },
    ]
}
#: One balanced H100 (2 × 1g.10gb, 2g.20gb, 3g.40gb): a 1g spawn falls back to the 2g once
#: both 1g slices are taken.
BALANCED_H100 = {"nodes": [{**TWO_H100["nodes"][1], "name": "h"}]}
CHROMIUM = "/usr/bin/chromium"
TIERS = {
    "notebook": {
        "display_name": "1g notebook",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "max_compute_slices": 3,
        "max_fallback_steps": 2,
        "default": True,
    },
    "training": {"display_name": "3g training", "compute_slices": 3, "min_memory_gb": 40},
    "full": {"display_name": "7g full GPU", "compute_slices": 7, "groups": ["vision"]},
}
TEAMS = {"vision": ["alice", "bob"], "nlp": ["carol", "alice"]}


def hub_config(cluster_url: str, workdir: Path, *, teams=None, **mig) -> dict:
    teams = TEAMS if teams is None else teams
    mig_config = {
        "tiers": TIERS,
        "team_quotas": {"vision": {"compute_slices": 8}, "nlp": {"compute_slices": 4}},
        "cluster_sync_timeout": 5.0,
        "cluster_retry_max_backoff": 0.5,
        # One test process starts hundreds of hubs: each freezing the heap would keep
        # every earlier test's cycles forever. test_watch_gc_freeze.py turns it on.
        "gc_freeze_after_list": False,
    }
    mig_config.update(mig)
    return {
        "JupyterHub": {
            "spawner_class": MIGSpawner,
            "load_groups": {team: {"users": users} for team, users in teams.items()},
            "allow_named_servers": True,
            "named_server_limit_per_user": 5,
        },
        # Each test's proxy has its own pid file: a shared one makes the next hub kill it.
        "ConfigurableHTTPProxy": {"pid_file": str(workdir / "proxy.pid")},
        "KubeSpawner": {
            "k8s_api_host": cluster_url,
            "namespace": "jhub",
            "start_timeout": 30,
            "http_timeout": 30,
            "storage_pvc_ensure": False,
            "image": "quay.io/jupyter/base-notebook:2024-12-09",
        },
        "MIGSpawner": mig_config,
    }


async def spawn(app, user: str, options: dict, server: str = ""):
    path = ("users", user, "servers", server) if server else ("users", user, "server")
    return await api_request(app, *path, method="post", data=json.dumps(options))


async def spawn_at_once(app, users: list[str], options: dict) -> list[tuple[str, int, dict]]:
    """POST a server for every user, all requests in flight at once (aiohttp, not the serial
    ``api_request``); ``[(user, status, body)]``."""
    headers = {**auth_header(app.db, "admin"), "Sec-Fetch-Mode": "cors"}
    base = public_url(app, path="hub")
    async with aiohttp.ClientSession(headers=headers) as http:

        async def one(user):
            url = ujoin(base, "api", "users", user, "server")
            async with http.post(url, json=options) as r:
                return user, r.status, await r.json(content_type=None)

        return list(await asyncio.gather(*(one(u) for u in users)))


def count_reservations_in_flight(monkeypatch) -> list[int]:
    """After each assumed spawn, how many the cache holds: a maximum above 1 proves that
    spawns were admitted concurrently."""
    from mig_spawner.core.cluster import ClusterState

    in_flight: list[int] = []
    assume = ClusterState.assume

    def counting(self, reservation, **kw):
        assume(self, reservation, **kw)
        in_flight.append(len(self.reservations))

    monkeypatch.setattr(ClusterState, "assume", counting)
    return in_flight


async def wait_ready(app, user: str, server: str = "", timeout: float = 30) -> None:
    spawner = app.users[user].spawners[server]
    deadline = asyncio.get_running_loop().time() + timeout
    while not spawner.ready:
        future = spawner._spawn_future
        if future is not None and future.done() and future.exception():
            raise future.exception()
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{user}/{server} not ready after {timeout}s")
        await asyncio.sleep(0.05)


async def stop(app, user: str, server: str = "") -> None:
    path = ("users", user, "servers", server) if server else ("users", user, "server")
    r = await api_request(app, *path, method="delete")
    assert r.status_code in (202, 204), r.text
    spawner = app.users[user].spawners[server]
    for _ in range(600):
        if not spawner.active:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{user}/{server} did not stop")


async def read_progress(app, user: str, events: list, timeout: float = 120) -> None:
    """Append ``user``'s progress events (the hub's event stream over HTTP) to ``events``
    as they come, until one says ready or failed."""
    url = ujoin(public_url(app, path="hub"), "api", "users", user, "server", "progress")
    async with (
        aiohttp.ClientSession(headers=auth_header(app.db, "admin")) as http,
        http.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as r,
    ):
        assert r.status == 200, await r.text()
        async for raw in r.content:
            line = raw.decode().strip()
            if line.startswith("data:"):
                events.append(json.loads(line[len("data:") :]))
                if events[-1].get("ready") or events[-1].get("failed"):
                    return


def pods_of(cluster, **labels) -> list[dict]:
    out = []
    for pod in cluster.pods:
        have = pod["metadata"].get("labels") or {}
        if all(have.get(f"mig-spawner/{k}") == v for k, v in labels.items()):
            out.append(pod)
    return out


def with_service(config: dict, workdir: Path, extra: dict | None = None) -> dict:
    """``extra`` plus mig-spawner's hub-managed service (hub/service.py) for a test hub,
    with this hub's spawner settings (``config`` and ``extra``'s, as a hub's ``c``)."""
    from mig_spawner.demo.ports import free_port
    from mig_spawner.hub.service import roles, service

    extra = {k: dict(v) for k, v in (extra or {}).items()}
    settings = {s: {**config.get(s, {}), **extra.get(s, {})} for s in ("KubeSpawner", "MIGSpawner")}
    hub = extra.setdefault("JupyterHub", {})
    hub["services"] = [service(settings, url=f"http://127.0.0.1:{free_port()}")]
    hub["load_roles"] = roles()
    # the hub's reclaim stops servers with the service's token (service() sets both)
    extra.setdefault("MIGSpawner", {})["hub_api_token"] = hub["services"][0]["api_token"]
    return extra


def service_url(app, path: str = "") -> str:
    """The public URL of mig-spawner's service (``{base_url}services/mig/``)."""
    return ujoin(public_url(app), "services/mig/", path)


async def logged_in_page(pw, app, user: str):
    """(browser, page, the hub's base URL): Chromium, logged in to ``app`` as ``user``
    through the hub's login form (MockHub: the password is the name)."""
    base = ujoin(public_host(app), app.hub.base_url)
    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    page = await browser.new_page()
    await page.goto(ujoin(base, "login"))
    await page.fill("#username_input", user)
    await page.fill("#password_input", user)
    await page.click("#login_submit")
    return browser, page, base
