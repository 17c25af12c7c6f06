"""Run the chart's hub as its pod runs it, on an emulated cluster, and drive it over HTTP.

Run by tests/z2jh with the hub image's pinned packages, as root, inside a private mount and
network namespace (``unshare --mount --net``), so that nothing here is seen outside:

* ``ROOT/usr/local/etc`` (laid out by ``chart.hub_pod``) is bind-mounted on /usr/local/etc,
  so the chart's ``jupyterhub_config.py`` and ``z2jh.py`` read the rendered ConfigMap and
  Secret where they read them in a pod; an /etc/hosts names the Services (hub, proxy-api);
* the namespace's own loopback carries the hub's fixed ports (8081, proxy 8000/8001) and the
  emulated cluster, so parallel runs never collide;
* the proxy runs with the rendered proxy Deployment's own command line, the hub with the
  hub Deployment's command, environment and working directory.

Then, as one JSON document on ``--out``: the tier order of each user's form; a run of
quota-refused spawns, on the empty cluster, longer than the chart's
``consecutiveFailureLimit``, with the hub's liveness after each; then a REST spawn per
(user, tier) with the hub's admission log line and the pod's labels.
Usage: ``hubpod.py ROOT CLUSTER.yaml SCENARIO.json --out RESULT.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from mig_spawner.demo.emulator import EmulatedCluster, load_cluster_file

HOSTS = "127.0.0.1 localhost hub proxy-api proxy-public\n"
HUB = "http://127.0.0.1:8000/hub"  # through the proxy, as users reach it


def private_namespace(root: Path) -> None:
    if os.getuid() != 0:
        sys.exit("hubpod.py runs as root inside `unshare --mount --net`")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["mount", "--bind", str(root / "usr/local/etc"), "/usr/local/etc"], check=True)
    hosts = root / "hosts"
    hosts.write_text(HOSTS)
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)


async def wait_http(session, url, *, timeout, proc=None, ok=(200,)):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            async with session.get(url) as r:
                if r.status in ok:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


class Hub:
    def __init__(self, session, token):
        self.session = session
        self.headers = {"Authorization": f"token {token}"}

    async def api(self, method, path, body=None):
        async with self.session.request(
            method, f"{HUB}/api{path}", json=body, headers=self.headers
        ) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text.startswith(("{", "[")) else text)

    async def wait_spawned(self, user, timeout=60):
        """Wait until the user's server is ready or its spawn has ended; return the model."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, model = await self.api("GET", f"/users/{user}")
            if status != 200 or not isinstance(model, dict):
                return {"error": f"GET /users/{user}: {status}"}
            server = (model.get("servers") or {}).get("")
            if server is None or server.get("ready") or not server.get("pending"):
                return server
            await asyncio.sleep(0.25)
        raise TimeoutError(f"{user}'s spawn still pending after {timeout}s")


async def login_and_get_form(user: str) -> tuple[int, str]:
    """Log in through the hub's login page (the chart's default DummyAuthenticator), as a
    browser does (the _xsrf cookie and field), and fetch the spawn form."""
    jar = aiohttp.CookieJar(unsafe=True)  # the hub is reached by IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(f"{HUB}/login") as r:
            await r.text()
        xsrf = next((c.value for c in jar if c.key == "_xsrf"), "")
        form = {"username": user, "password": "any", "_xsrf": xsrf}
        async with browser.post(f"{HUB}/login", data=form, allow_redirects=False) as r:
            if r.status not in (302, 303):
                return r.status, await r.text()
        async with browser.get(f"{HUB}/spawn/{user}") as r:
            return r.status, await r.text()


def form_tiers(html: str) -> list[str]:
    return re.findall(r'<input type="radio"\s+name="profile"\s+id="[^"]*"\s+value="([^"]+)"', html)


def decision_lines(text: str, user: str) -> list[str]:
    """The hub's one log line per spawn decision (``decision user=... outcome=...``)."""
    return [line for line in text.splitlines() if f"decision user={user} " in line]


def log_since(log: Path, offset: int) -> str:
    return log.read_bytes()[offset:].decode(errors="replace")


async def scenario(root: Path, cluster_file: Path, plan: dict, pod) -> dict:
    result: dict = {"forms": {}, "spawns": [], "refusals": []}
    async with EmulatedCluster(load_cluster_file(cluster_file), kubelet="stub") as cluster:
        kubeconfig = root / "kubeconfig"
        cluster.write_kubeconfig(kubeconfig)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(pod["workdir"]),
            "KUBECONFIG": str(kubeconfig),  # no token file here: KubeSpawner falls back to it
            **pod["env"],
        }
        log = root / "hub.log"
        with open(log, "wb") as out:
            proxy = subprocess.Popen(pod["proxy_command"], env=env, stdout=out, stderr=out)
            hub = subprocess.Popen(
                pod["command"], env=env, cwd=pod["workdir"], stdout=out, stderr=out
            )
        result["log"] = str(log)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
                await wait_http(s, f"{HUB}/api/", timeout=60, proc=hub)
                h = Hub(s, plan["token"])
                for group, users in plan["groups"].items():
                    await h.api("POST", "/users", {"usernames": users})
                    await h.api("POST", f"/groups/{group}", {})
                    status, body = await h.api("POST", f"/groups/{group}/users", {"users": users})
                    if status >= 300:
                        raise RuntimeError(f"adding {users} to {group}: {status} {body}")
                await h.api("POST", "/users", {"usernames": plan["users"]})
                for user in plan["forms"]:
                    status, html = await login_and_get_form(user)
                    result["forms"][user] = {
                        "status": status,
                        "tiers": form_tiers(html),
                        "html": html,
                    }
                refusal = plan["refusals"]
                for attempt in range(refusal["count"]):
                    if hub.poll() is not None:
                        break
                    offset = log.stat().st_size
                    status, body = await h.api(
                        "POST", f"/users/{refusal['user']}/server", {"tier": refusal["tier"]}
                    )
                    server = await h.wait_spawned(refusal["user"])
                    await asyncio.sleep(0.3)  # let the hub act on the failure
                    alive = hub.poll() is None
                    api_status = None
                    if alive:
                        api_status, _ = await h.api("GET", "/")
                    text = log_since(log, offset)
                    result["refusals"].append(
                        {
                            "attempt": attempt + 1,
                            "status": status,
                            "server": server,
                            "hub_alive": alive,
                            "api_status": api_status,
                            "refused_line": decision_lines(text, refusal["user"]),
                        }
                    )
                # JupyterHub stops itself a moment after the failure that reaches the limit
                await asyncio.sleep(3)
                result["alive_after_refusals"] = hub.poll() is None
                for spawn in plan["spawns"]:
                    if hub.poll() is not None:
                        break
                    user, tier = spawn["user"], spawn["tier"]
                    offset = log.stat().st_size
                    status, _ = await h.api("POST", f"/users/{user}/server", {"tier": tier})
                    server = await h.wait_spawned(user)
                    pods = [
                        p["metadata"].get("labels", {})
                        for p in cluster.pods
                        if p["metadata"].get("labels", {}).get("hub.jupyter.org/username") == user
                    ]
                    text = log_since(log, offset)
                    result["spawns"].append(
                        {
                            "user": user,
                            "tier": tier,
                            "status": status,
                            "teams": spawn.get("teams"),
                            "ready": bool(server and server.get("ready")),
                            "hub_alive": hub.poll() is None,
                            "pod_labels": pods,
                            "admission": decision_lines(text, user),
                        }
                    )
        finally:
            for proc in (hub, proxy):
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            result["hub_returncode"] = hub.returncode
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("cluster", type=Path)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    pod = json.loads((args.root / "pod.json").read_text())
    private_namespace(args.root)
    result = asyncio.run(scenario(args.root, args.cluster, plan, pod))
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
