"""Run the chart's hub as its pod runs it, on a cluster, and drive it over HTTP.

The cluster is the emulator (the hub reads a kubeconfig), or with ``--real`` the real
control plane with the hub's ServiceAccount token mounted as in a pod (``realcluster.py``).

Run by tests/z2jh with the hub image's pinned packages, as root, inside a private mount and
network namespace (``unshare --mount --net``), so that nothing here is seen outside:

* ``ROOT/usr/local/etc`` (laid out by ``chart.hub_pod``) is bind-mounted on /usr/local/etc,
  so the chart's ``jupyterhub_config.py`` and ``z2jh.py`` read the rendered ConfigMap and
  Secret where they read them in a pod; an /etc/hosts names the Services (hub, proxy-api);
* the namespace's own loopback carries the hub's fixed ports (8081, proxy 8000/8001) and the
  cluster, so parallel runs never collide;
* the proxy runs with the rendered proxy Deployment's own command line, the hub with the
  hub Deployment's command, environment and working directory.

Then, as one JSON document on ``--out``: the tier order of each user's form; a run of
quota-refused spawns, on the empty cluster, longer than the chart's
``consecutiveFailureLimit``, with the hub's liveness after each; then a REST spawn per
(user, tier) with the hub's admission log line and the pod; with ``rbac_drop``, the hub
restarted after a verb is taken out of a ClusterRole, its form and one more spawn.
Usage: ``hubpod.py ROOT CLUSTER.yaml SCENARIO.json --out RESULT.json`` or
``hubpod.py --real ROOT SETUP.json SCENARIO.json --out RESULT.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
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


class Emulated:
    """The emulated cluster; the hub finds it through a kubeconfig (no token file)."""

    def __init__(self, root: Path, cluster_file: Path):
        self.root, self.cluster_file = root, cluster_file

    async def __aenter__(self) -> Emulated:
        self.cluster = EmulatedCluster(load_cluster_file(self.cluster_file), kubelet="stub")
        await self.cluster.__aenter__()
        self.kubeconfig = self.root / "kubeconfig"
        self.cluster.write_kubeconfig(self.kubeconfig)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.cluster.__aexit__(*exc)

    def hub_env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}

    def hub_command(self, command: list[str]) -> list[str]:
        return command

    def pods(self) -> list[dict]:
        return self.cluster.pods

    def evidence(self, user: str) -> dict:
        return {}


#: What the kubelet gives a pod between SIGTERM and SIGKILL (terminationGracePeriodSeconds,
#: the chart sets none for the hub). JupyterHub needs up to 20 s of it: a managed service
#: (the chart's idle culler) gets SIGINT, 10 s, then SIGTERM, 5 s, then SIGKILL.
GRACE_SECONDS = 30


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{entry}/status").read_text()
                ppid = next(ln for ln in status.splitlines() if ln.startswith("PPid:"))
                if int(ppid.split()[1]) == pid:
                    out.append(int(entry))
    return out


def stop_process(proc) -> None:
    """Stop ``proc`` as the kubelet stops its container: SIGTERM, the grace period, SIGKILL;
    then whatever it started and left (its managed services) ends with the container."""
    children = _children(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def scenario(root: Path, cluster, plan: dict, pod) -> dict:
    result: dict = {"forms": {}, "spawns": [], "refusals": []}
    async with cluster:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(pod["workdir"]),
            **cluster.hub_env(),
            **pod["env"],
        }
        log = root / "hub.log"

        def start_hub():
            with open(log, "ab") as out:
                return subprocess.Popen(
                    cluster.hub_command(pod["command"]),
                    env=env,
                    cwd=pod["workdir"],
                    stdout=out,
                    stderr=out,
                )

        log.write_bytes(b"")
        with open(log, "ab") as out:  # appends: the hub's and the proxy's lines interleave
            proxy = subprocess.Popen(pod["proxy_command"], env=env, stdout=out, stderr=out)
        hub = start_hub()
        result["log"] = str(log)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
                await wait_http(s, f"{HUB}/api/", timeout=90, proc=hub)
                h = Hub(s, plan["token"])
                for group, users in plan["groups"].items():
                    await h.api("POST", "/users", {"usernames": users})
                    await h.api("POST", f"/groups/{group}", {})
                    status, body = await h.api("POST", f"/groups/{group}/users", {"users": users})
                    if status >= 300:
                        raise RuntimeError(f"adding {users} to {group}: {status} {body}")
                await h.api("POST", "/users", {"usernames": plan["users"]})
                for user in plan["forms"]:
                    result["forms"][user] = await get_form(user)
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
                if refusal["count"]:
                    # JupyterHub stops itself a moment after the failure that reaches the limit
                    await asyncio.sleep(3)
                result["alive_after_refusals"] = hub.poll() is None
                for spawn in plan["spawns"]:
                    if hub.poll() is not None:
                        break
                    result["spawns"].append(await spawn_one(h, cluster, log, hub, spawn))
                change = plan.get("rbac_drop")
                if change and hub.poll() is None:
                    # an operator's RBAC mistake, then the hub restarts (its pod is replaced)
                    stop_process(hub)
                    cluster.drop_verb(change)
                    offset = log.stat().st_size
                    hub = start_hub()
                    await wait_http(s, f"{HUB}/api/", timeout=90, proc=hub)
                    result["after_drop"] = {
                        "form": await get_form(change["user"]),
                        "spawn": await spawn_one(h, cluster, log, hub, change),
                    }
                    result["after_drop"]["log"] = log_since(log, offset)
        finally:
            for proc in (hub, proxy):
                stop_process(proc)
            result["hub_returncode"] = hub.returncode
    return result


async def get_form(user: str) -> dict:
    status, html = await login_and_get_form(user)
    return {"status": status, "tiers": form_tiers(html), "html": html}


async def spawn_one(h: Hub, cluster, log: Path, hub, spawn: dict) -> dict:
    """A REST spawn of ``spawn["tier"]`` for ``spawn["user"]``; what the hub and cluster did."""
    user, tier = spawn["user"], spawn["tier"]
    offset = log.stat().st_size
    status, body = await h.api("POST", f"/users/{user}/server", {"tier": tier})
    server = await h.wait_spawned(user)
    pods = [
        p
        for p in cluster.pods()
        if p["metadata"].get("labels", {}).get("hub.jupyter.org/username") == user
    ]
    return {
        "user": user,
        "tier": tier,
        "status": status,
        "body": body,
        "teams": spawn.get("teams"),
        "ready": bool(server and server.get("ready")),
        "hub_alive": hub.poll() is None,
        "pod_labels": [p["metadata"].get("labels", {}) for p in pods],
        "pods": pods,
        "admission": decision_lines(log_since(log, offset), user),
        **cluster.evidence(user),
    }


def reap_namespace(grace: float = 5.0) -> list[str]:
    """Stop whatever still runs in this private network namespace, and say what it was.

    Everything in it was started here (the hub's own children too: the chart's idle culler,
    which a hub that exits by itself leaves running), so this ends only our processes.
    """
    ours, me = os.readlink("/proc/self/ns/net"), os.getpid()
    left: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/net") != ours:
                continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            os.kill(int(entry), signal.SIGTERM)
            left[int(entry)] = " ".join(a.decode(errors="replace") for a in cmdline if a)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # gone already, or a zombie
    deadline = time.monotonic() + grace
    for pid in left:
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}/ns/net"):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            if os.path.exists(f"/proc/{pid}/ns/net"):
                os.kill(pid, signal.SIGKILL)
    return sorted(left.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("cluster", type=Path, help="a cluster file, or with --real a setup")
    parser.add_argument("plan", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--real", action="store_true", help="the real control plane")
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    pod = json.loads((args.root / "pod.json").read_text())
    private_namespace(args.root)
    if args.real:
        from realcluster import RealCluster  # the real control plane (issue 9's launcher)

        cluster = RealCluster(args.root, json.loads(args.cluster.read_text()))
    else:
        cluster = Emulated(args.root, args.cluster)
    try:
        result = asyncio.run(scenario(args.root, cluster, plan, pod))
    finally:
        left = reap_namespace()
    result["left_running"] = left
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
