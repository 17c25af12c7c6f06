"""The kubelet: pod status, loopback IPs, stub servers, real processes, graceful deletion,
restart policy, and no processes left behind."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
from pathlib import Path

import aiohttp
import pytest
from emu_helpers import THREE_NODES, make_pod, wait_phase
from kubernetes_asyncio import watch

from mig_spawner.demo.emulator.podenv import container_port, rewrite_for_pod_ip


def is_pod_loopback(ip: str) -> bool:
    """127.0.0.N, N >= 2 (127.0.0.1 is the hub's; a concurrent test run may hold some N)."""
    address = ipaddress.ip_address(ip)
    return address in ipaddress.ip_network("127.0.0.0/8") and int(address) > int(
        ipaddress.ip_address("127.0.0.1")
    )


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def http_get(url: str, attempts: int = 100) -> tuple[int, dict | str]:
    for _ in range(attempts):
        try:
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                body = await (
                    response.json()
                    if response.content_type == "application/json"
                    else response.text()
                )
                return response.status, body
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never answered")


async def test_stub_pod_runs_on_its_own_loopback_ip(emu):
    emu.store.create(
        "pods", "default", make_pod("nb", args=["jupyterhub-singleuser", "--port=8899"])
    )
    pod = await wait_phase(emu, "nb", "Running")
    status = pod["status"]
    ip = status["podIP"]
    assert is_pod_loopback(ip) and status["podIPs"] == [{"ip": ip}]
    assert status["hostIP"].startswith("127.1.")
    container = status["containerStatuses"][0]
    assert container["ready"] is True and "running" in container["state"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodScheduled": "True",
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
    }
    code, body = await http_get(f"http://{ip}:8899/user/someone/api/status")
    assert code == 200 and body["pod"] == "nb" and body["path"] == "/user/someone/api/status"
    reasons = [e["reason"] for e in emu.events if e["involvedObject"]["name"] == "nb"]
    assert reasons == ["Scheduled", "Pulled", "Created", "Started"]


async def test_ips_are_unique_and_reused_after_the_pod_is_gone(emu):
    for name in ("a", "b"):
        emu.store.create("pods", "default", make_pod(name))
    a, b = await wait_phase(emu, "a", "Running"), await wait_phase(emu, "b", "Running")
    ips = a["status"]["podIP"], b["status"]["podIP"]
    assert ips[0] != ips[1] and all(is_pod_loopback(ip) for ip in ips)
    emu.store.delete("pods", "default", "a", grace=0)
    await emu.wait_for(lambda c: c.pod("a") is None)
    await emu.wait_for(lambda c: ips[0] not in c.kubelet.ips.in_use)
    emu.store.create("pods", "default", make_pod("c"))
    assert (await wait_phase(emu, "c", "Running"))["status"]["podIP"] == a["status"]["podIP"]


async def test_graceful_delete_then_deleted_event(emu, core):
    emu.store.create("pods", "default", make_pod("p"))
    await wait_phase(emu, "p", "Running")
    listed = await core.list_namespaced_pod("default")
    deleted = await core.delete_namespaced_pod("p", "default", grace_period_seconds=5)
    assert deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.deletion_grace_period_seconds == 5
    await emu.wait_for(lambda c: c.pod("p") is None)
    events = []
    async with watch.Watch().stream(
        core.list_namespaced_pod,
        "default",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=1,
    ) as stream:
        async for event in stream:
            events.append((event["type"], event["raw_object"]))
    assert events[0][0] == "MODIFIED" and events[0][1]["metadata"]["deletionTimestamp"]
    assert events[-1][0] == "DELETED"
    final = events[-2][1]["status"]
    assert final["phase"] == "Succeeded"
    assert final["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert "Killing" in [e["reason"] for e in emu.events]


async def test_delete_with_zero_grace_and_unbound_pods_go_at_once(emu, core):
    emu.store.create("pods", "default", make_pod("now"))
    await wait_phase(emu, "now", "Running")
    await core.delete_namespaced_pod("now", "default", grace_period_seconds=0)
    assert emu.pod("now") is None
    emu.store.create("pods", "default", make_pod("pending", {"nvidia.com/mig-7g.80gb": "1"}))
    await emu.wait_for(lambda c: c.pod("pending")["status"].get("conditions"))
    await core.delete_namespaced_pod("pending", "default")  # default grace, but never bound
    assert emu.pod("pending") is None


def test_pod_ip_rewriting_and_port_choice():
    argv, env = rewrite_for_pod_ip(
        ["jupyterhub-singleuser", "--ip=0.0.0.0", "--port=8888", "--ip", "0.0.0.0"],
        {"JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:8888/user/a/", "OTHER": "0.0.0.0"},
        "127.0.0.7",
    )
    assert argv == ["jupyterhub-singleuser", "--ip=127.0.0.7", "--port=8888", "--ip", "127.0.0.7"]
    assert env == {"JUPYTERHUB_SERVICE_URL": "http://127.0.0.7:8888/user/a/", "OTHER": "0.0.0.0"}
    _, env = rewrite_for_pod_ip(
        [], {"JUPYTERHUB_SERVICE_URL": "http://localhost:9000/"}, "127.0.0.9"
    )
    assert env["JUPYTERHUB_SERVICE_URL"] == "http://127.0.0.9:9000/"
    assert container_port({"args": ["--port=9999"], "ports": [{"containerPort": 1}]}, {}) == 9999
    assert container_port({"ports": [{"containerPort": 8000}]}, {}) == 8000
    assert container_port({}, {"JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:7777/"}) == 7777
    assert container_port({}, {}) == 8888


def http_server_pod(name: str, **spec) -> dict:
    """A pod whose main process serves HTTP on its pod IP and has a grandchild in its own
    session (as Jupyter kernels are), which must die with the pod."""
    script = (
        "setsid sleep 300 & echo $! > $HOME/grandchild.pid; "
        f"exec {sys.executable} -m http.server 8000 --bind $(POD_IP)"
    )
    body = make_pod(name, **spec)
    body["spec"]["containers"][0].update(
        command=["sh", "-c", script],
        env=[{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        ports=[{"containerPort": 8000}],
    )
    return body


async def process_pids(cluster, pod: dict) -> tuple[int, int]:
    path = Path(cluster.kubelet.pod_dir(pod)) / "grandchild.pid"
    await cluster.wait_for(lambda c: path.exists() and path.read_text().strip())
    init = cluster.kubelet.workers[pod["metadata"]["uid"]].runtime.pid
    return init, int(path.read_text())


async def test_process_pod_is_killed_on_delete(make_emu):
    cluster = await make_emu(THREE_NODES, kubelet="process")
    cluster.store.create("pods", "default", http_server_pod("web"))
    pod = await wait_phase(cluster, "web", "Running")
    ip = pod["status"]["podIP"]
    code, body = await http_get(f"http://{ip}:8000/")
    assert code == 200 and "Directory listing" in body
    init, grandchild = await process_pids(cluster, pod)
    assert alive(init) and alive(grandchild)
    cluster.store.delete("pods", "default", "web", grace=5)
    await cluster.wait_for(lambda c: c.pod("web") is None)
    assert not alive(init) and not alive(grandchild)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(f"http://{ip}:8000/"):
            pass
    log = cluster.pod_log("web")
    assert f"--bind {ip}" in log and '"GET / HTTP/1.1" 200' in log


async def test_process_pods_are_killed_on_stop(make_emu):
    cluster = await make_emu(None, kubelet="process")
    cluster.add_node({"name": "cpu"})
    cluster.store.create("pods", "default", http_server_pod("a"))
    cluster.store.create("pods", "default", http_server_pod("b"))
    pids = []
    for name in ("a", "b"):
        pids += await process_pids(cluster, await wait_phase(cluster, name, "Running"))
    assert all(alive(pid) for pid in pids)
    await cluster.stop()
    assert not any(alive(pid) for pid in pids)
    assert cluster.kubelet.workers == {}


async def test_process_environment_path_and_exit_codes(make_emu):
    cluster = await make_emu(None, kubelet="process", restart_backoff=0.1)
    cluster.add_node({"name": "cpu"})
    script = (
        "import os, shutil, sys; print('ARGS', sys.argv[1:]); "
        "print('URL', os.environ['JUPYTERHUB_SERVICE_URL']); "
        "print('SU', shutil.which('jupyterhub-singleuser')); print('HOME', os.environ['HOME']); "
        "sys.exit(int(os.environ['CODE']))"
    )

    def pod(name, code, policy):
        body = make_pod(
            name,
            restartPolicy=policy,
            args=[sys.executable, "-c", script, "--ip=0.0.0.0", "--port=8888"],
        )
        body["spec"]["containers"][0]["env"] = [
            {"name": "CODE", "value": str(code)},
            {"name": "JUPYTERHUB_SERVICE_URL", "value": "http://0.0.0.0:8888/user/x/"},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ]
        return body

    cluster.store.create("pods", "default", pod("ok", 0, "Never"))
    cluster.store.create("pods", "default", pod("bad", 3, "Never"))
    ok = await wait_phase(cluster, "ok", "Succeeded")
    bad = await wait_phase(cluster, "bad", "Failed")
    assert ok["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    terminated = bad["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
    ip = ok["status"]["podIP"]
    log = cluster.pod_log("ok")
    assert f"ARGS ['--ip={ip}', '--port=8888']" in log
    assert f"URL http://{ip}:8888/user/x/" in log
    assert f"SU {os.path.dirname(sys.executable)}/jupyterhub-singleuser" in log
    assert f"HOME {cluster.kubelet.pod_dir(ok)}" in log
    # OnFailure: a failed container is restarted (after the back-off), the pod stays Running
    cluster.store.create("pods", "default", pod("flaky", 1, "OnFailure"))
    restarted = await cluster.wait_for(
        lambda c: (
            (p := c.pod("flaky"))
            and p["status"].get("containerStatuses")
            and p["status"]["containerStatuses"][0]["restartCount"] >= 1
            and p
        )
    )
    assert restarted["status"]["phase"] == "Running"
    assert restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1
    assert "BackOff" in [e["reason"] for e in cluster.events]
    # finished pods are removed at once when deleted
    cluster.store.delete("pods", "default", "ok")
    assert cluster.pod("ok") is None


async def test_missing_executable_fails_the_pod(make_emu):
    cluster = await make_emu(None, kubelet="process")
    cluster.add_node({"name": "cpu"})
    cluster.store.create(
        "pods", "default", make_pod("nope", restartPolicy="Never", args=["no-such-command-xyz"])
    )
    pod = await wait_phase(cluster, "nope", "Failed")
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 127
    assert "cannot run 'no-such-command-xyz'" in cluster.pod_log("nope")


async def test_deleting_a_node_garbage_collects_its_pods(emu):
    emu.store.create("pods", "default", make_pod("on-a100", {"nvidia.com/mig-3g.20gb": "1"}))
    pod = await wait_phase(emu, "on-a100", "Running")
    assert pod["spec"]["nodeName"] == "gpu-a100-a"
    emu.delete_node("gpu-a100-a")
    await emu.wait_for(lambda c: c.pod("on-a100") is None)
    await emu.wait_for(lambda c: pod["status"]["podIP"] not in c.kubelet.ips.in_use)
    assert [n["metadata"]["name"] for n in emu.nodes] == ["gpu-h100-a", "gpu-h100-b"]


async def test_start_delay_shows_container_creating(make_emu):
    cluster = await make_emu(THREE_NODES, start_delay=0.3)
    cluster.store.create("pods", "default", make_pod("slow"))

    def creating(c):
        status = c.pod("slow")["status"]
        waiting = (status.get("containerStatuses") or [{}])[0].get("state", {}).get("waiting")
        return status["phase"] == "Pending" and waiting and waiting["reason"] == "ContainerCreating"

    await cluster.wait_for(creating)
    assert cluster.pod("slow")["status"]["podIP"]
    await wait_phase(cluster, "slow", "Running")


async def test_process_mode_runs_real_jupyterhub_singleuser(make_emu, tmp_path):
    """What the demo does: KubeSpawner-style env (service URL on 0.0.0.0), the command from
    the venv, the server reachable on the pod IP, and a clean stop on delete."""
    import jupyterhub
    from aiohttp import web

    async def hub_api(request: web.Request) -> web.Response:
        return web.json_response(
            {"version": jupyterhub.__version__},
            headers={"X-JupyterHub-Version": jupyterhub.__version__},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hub_api)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hub_port = runner.addresses[0][1]
    try:
        cluster = await make_emu(THREE_NODES, kubelet="process")
        env = {
            "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:8888/user/x/",
            "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub_port}/hub/api",
            "JUPYTERHUB_API_TOKEN": "token",
            "JUPYTERHUB_BASE_URL": "/",
            "JUPYTERHUB_SERVICE_PREFIX": "/user/x/",
            "JUPYTERHUB_USER": "x",
            "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-x",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/x/oauth_callback",
        }
        body = make_pod(
            "jupyter-x",
            {"nvidia.com/mig-1g.10gb": "1"},
            restartPolicy="OnFailure",
            args=["jupyterhub-singleuser"],
        )
        body["spec"]["containers"][0]["env"] = [{"name": k, "value": v} for k, v in env.items()]
        cluster.store.create("pods", "default", body)
        pod = await wait_phase(cluster, "jupyter-x", "Running")
        ip = pod["status"]["podIP"]
        code, answer = await http_get(f"http://{ip}:8888/user/x/api", attempts=400)
        assert code == 200 and "version" in answer, cluster.pod_log("jupyter-x")
        cluster.store.delete("pods", "default", "jupyter-x", grace=10)
        await cluster.wait_for(lambda c: c.pod("jupyter-x") is None, timeout=15)
        assert "received signal 15, stopping" in cluster.pod_log("jupyter-x")
    finally:
        await runner.cleanup()


async def test_kubelet_rejects_pinned_pods_that_do_not_fit(emu):
    pinned = make_pod("pinned", {"nvidia.com/mig-1g.10gb": "8"}, nodeName="gpu-h100-a")
    emu.create_pod(pinned)
    pod = await wait_phase(emu, "pinned", "Failed")
    assert pod["status"]["reason"] == "OutOfnvidia.com/mig-1g.10gb"
    assert pod["status"]["message"] == (
        "Pod was rejected: Node didn't have enough resource: nvidia.com/mig-1g.10gb, "
        "requested: 8, used: 0, capacity: 7"
    )
    assert "OutOfnvidia.com/mig-1g.10gb" in [e["reason"] for e in emu.events]
    fits = make_pod("fits", {"nvidia.com/mig-1g.10gb": "7"}, nodeName="gpu-h100-a")
    emu.create_pod(fits)
    assert (await wait_phase(emu, "fits", "Running"))["spec"]["nodeName"] == "gpu-h100-a"
