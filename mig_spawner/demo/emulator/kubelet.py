"""The kubelet of every emulated node.

For each pod bound to a Ready node a pod worker starts the pod (mode ``"process"``: the first
container as a real process under :mod:`podinit`; ``"stub"``: a tiny HTTP server) on its own
loopback IP, and reports status as a kubelet does (:mod:`podstatus`): ``phase=Running``,
``podIP``, ``hostIP``, ``containerStatuses`` (running, ready), conditions
PodReadyToStartContainers, Initialized, Ready and ContainersReady, and Pulled, Created and
Started events. Init containers are reported as completed without being run; only the first
container runs (in process mode; the others are reported running). A process gets the
kubelet's PATH (so the venv's ``jupyterhub-singleuser`` is found), its own HOME, and, when the
emulator runs as root, a Jupyter config allowing root, since a real notebook container would
not run as root.

A pod created with ``spec.nodeName`` set (bypassing the scheduler) that does not fit the
node's allocatable resources is rejected as the kubelet rejects it: phase Failed, reason
``OutOf<resource>``, and a Warning event.

When the process exits, ``restartPolicy`` decides, as in Kubernetes: ``Never`` (or exit 0
under ``OnFailure``) makes the pod Succeeded (0) or Failed; otherwise the container shows
``terminated`` and is restarted after a back-off (``restart_backoff``, doubling, at most 300 s).

When the pod gets a ``deletionTimestamp`` the worker records a Killing event, sends SIGTERM,
waits up to the grace period, kills what is left, reports the final status and removes the
pod (the DELETED watch event). A pod removed outright (grace 0) is killed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import shlex
import sys
import uuid
from collections import Counter
from typing import Any

from . import podstatus
from .events import EventRecorder
from .podenv import container_env, container_port, expand, rewrite_for_pod_ip
from .quantity import format_quantity
from .runtime import IPAllocator, ProcessRuntime, StubRuntime
from .scheduler import TERMINAL, allocatable, node_ready, pod_requests
from .store import Change, Store

log = logging.getLogger(__name__)


class Kubelet:
    def __init__(
        self,
        store: Store,
        recorder: EventRecorder,
        mode: str = "stub",
        *,
        log_dir: str,
        api_host: str = "127.0.0.1",
        api_port: int = 0,
        default_command: list[str] | None = None,
        restart_backoff: float = 10.0,
        start_delay: float = 0.0,
    ) -> None:
        if mode not in ("stub", "process"):
            raise ValueError(f"kubelet mode must be 'stub' or 'process', not {mode!r}")
        self.store, self.recorder, self.mode = store, recorder, mode
        self.log_dir, self.api_host, self.api_port = log_dir, api_host, api_port
        self.default_command = default_command or ["jupyterhub-singleuser"]
        self.restart_backoff, self.start_delay = restart_backoff, start_delay
        self.ips = IPAllocator()
        self.workers: dict[str, PodWorker] = {}
        self.stopping = False
        self.running = False
        store.add_listener(self._on_change)

    def start(self, api_port: int) -> None:
        self.api_port, self.running = api_port, True
        for pod in self.store.list("pods"):
            self._consider(pod)

    def pod_dir(self, pod: dict[str, Any]) -> str:
        meta = pod["metadata"]
        return os.path.join(
            self.log_dir, f"{meta.get('namespace')}_{meta['name']}_{meta['uid'][:8]}"
        )

    def _on_change(self, change: Change) -> None:
        if self.stopping or not self.running:
            return
        if change.plural == "nodes" and change.type != "DELETED" and node_ready(change.obj):
            for pod in self.store.list("pods"):
                if (pod.get("spec") or {}).get("nodeName") == change.obj["metadata"]["name"]:
                    self._consider(pod)
        elif change.plural == "pods":
            meta = change.obj["metadata"]
            worker = self.workers.get(meta["uid"])
            if worker is None:
                if change.type != "DELETED":
                    self._consider(change.obj)
            elif change.type == "DELETED":
                worker.request_stop(0, gone=True)
            elif meta.get("deletionTimestamp"):
                worker.request_stop(meta.get("deletionGracePeriodSeconds") or 0)

    def _consider(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        node = self.store.find("nodes", None, spec.get("nodeName") or "")
        if node is None or not node_ready(node) or meta["uid"] in self.workers:
            return
        if meta.get("deletionTimestamp"):  # bound but never started: nothing to stop
            loop = asyncio.get_running_loop()
            loop.call_soon(self.store.remove, "pods", meta["namespace"], meta["name"])
            return
        if (pod.get("status") or {}).get("phase") not in (None, "Pending"):
            return
        rejection = self._admission_error(pod, node)
        if rejection is not None:
            loop = asyncio.get_running_loop()
            loop.call_soon(self._reject, meta["namespace"], meta["name"], *rejection)
            return
        self.workers[meta["uid"]] = PodWorker(self, pod, node)

    def _admission_error(self, pod: dict[str, Any], node: dict[str, Any]) -> tuple[str, str] | None:
        """The kubelet's own resource check, which matters for pods created with
        ``spec.nodeName`` set (the scheduler never places a pod that does not fit)."""
        name, uid = node["metadata"]["name"], pod["metadata"]["uid"]
        used: Counter = Counter()
        for other in self.store.list("pods"):
            other_uid, phase = other["metadata"]["uid"], (other.get("status") or {}).get("phase")
            admitted = other_uid in self.workers or phase == "Running"
            same_node = (other.get("spec") or {}).get("nodeName") == name
            if same_node and admitted and other_uid != uid and phase not in TERMINAL:
                used.update(pod_requests(other))
                used["pods"] += 1
        capacity = allocatable(node)
        if used["pods"] + 1 > capacity["pods"]:
            message = f"Node didn't have enough resource: pods, capacity: {capacity['pods']}"
            return "OutOfpods", f"Pod was rejected: {message}"
        for resource, amount in sorted(pod_requests(pod).items()):
            if amount > 0 and used[resource] + amount > capacity[resource]:
                return f"OutOf{resource}", (
                    f"Pod was rejected: Node didn't have enough resource: {resource}, requested: "
                    f"{format_quantity(amount)}, used: {format_quantity(used[resource])}, "
                    f"capacity: {format_quantity(capacity[resource])}"
                )
        return None

    def _reject(self, namespace: str, name: str, reason: str, message: str) -> None:
        def fail(pod: dict[str, Any]) -> None:
            pod.setdefault("status", {}).update(phase="Failed", reason=reason, message=message)

        rejected = self.store.mutate("pods", namespace, name, fail)
        if rejected is not None:
            node = rejected["spec"].get("nodeName")
            self.recorder.record(rejected, "Warning", reason, message, "kubelet", node)

    async def stop(self, grace: float = 2.0) -> None:
        """Stop every pod's process or stub server (SIGTERM, then SIGKILL after ``grace``)."""
        self.stopping = True
        workers = list(self.workers.values())
        for worker in workers:
            worker.request_stop(grace, gone=True)
        await asyncio.gather(*(w.task for w in workers), return_exceptions=True)
        self.ips.close()

    def base_env(self, pod: dict[str, Any], home: str) -> dict[str, str]:
        path = os.pathsep.join(
            [os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)]
        )
        env = {
            "PATH": path,
            "HOME": home,
            "HOSTNAME": pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": self.api_host,
            "KUBERNETES_SERVICE_PORT": str(self.api_port),
        }
        for name in ("LANG", "LC_ALL", "TZ", "TMPDIR"):
            if name in os.environ:
                env[name] = os.environ[name]
        if self.mode == "process" and hasattr(os, "geteuid") and os.geteuid() == 0:
            env["JUPYTER_CONFIG_PATH"] = self._allow_root_config()
        return env

    def _allow_root_config(self) -> str:
        """A real notebook container runs as a non-root user (KubeSpawner's runAsUser 1000);
        when the emulator runs as root, this Jupyter config lets Jupyter Server start anyway
        instead of refusing with "Running as root is not recommended"."""
        path = os.path.join(self.log_dir, "jupyter-config")
        config = os.path.join(path, "jupyter_server_config.json")
        if not os.path.exists(config):
            os.makedirs(path, exist_ok=True)
            with open(config, "w") as file:
                json.dump({"ServerApp": {"allow_root": True}}, file)
        return path


class PodWorker:
    """Runs one pod from start to removal (the kubelet's pod worker)."""

    def __init__(self, kubelet: Kubelet, pod: dict[str, Any], node: dict[str, Any]) -> None:
        self.kubelet, self.store = kubelet, kubelet.store
        self.namespace, self.name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        self.node_name = node["metadata"]["name"]
        addresses = (node.get("status") or {}).get("addresses") or []
        self.host_ip = next(
            (a["address"] for a in addresses if a.get("type") == "InternalIP"), "127.0.0.1"
        )
        self.runtime: ProcessRuntime | StubRuntime | None = None
        self.ip: str | None = None
        self.restarts = 0
        self.grace: float = 0
        self.gone = False
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"pod-{self.namespace}/{self.name}")

    @property
    def pod(self) -> dict[str, Any] | None:
        found = self.store.find("pods", self.namespace, self.name)
        return found if found is not None and found["metadata"]["uid"] == self.uid else None

    def request_stop(self, grace: float, gone: bool = False) -> None:
        self.grace = min(self.grace, grace) if self._stop.is_set() else grace
        self.gone = self.gone or gone
        self._stop.set()

    def _event(self, type_: str, reason: str, message: str, container: str) -> None:
        pod = self.pod
        if pod is not None:
            self.kubelet.recorder.record(
                pod,
                type_,
                reason,
                message,
                "kubelet",
                self.node_name,
                f"spec.containers{{{container}}}",
            )

    def _update(self, change) -> None:
        if not self.gone and self.pod is not None:
            self.store.mutate("pods", self.namespace, self.name, change)

    def _started(self, running: bool):
        container_id = (
            f"emulated://{uuid.uuid5(uuid.NAMESPACE_OID, f'{self.uid}/{self.restarts}').hex}"
        )
        return lambda p: podstatus.set_started(
            p,
            running=running,
            pod_ip=self.ip,
            host_ip=self.host_ip,
            container_id=container_id,
            restarts=self.restarts,
        )

    async def _sleep_or_stop(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _run(self) -> None:
        try:
            pod = self.pod
            if pod is None:
                return
            self._allocate_ip(pod)  # the sandbox's IP comes before the containers start
            if self.kubelet.start_delay > 0:
                self._update(self._started(running=False))
                await self._sleep_or_stop(self.kubelet.start_delay)
            while not self._stop.is_set() and self.pod is not None:
                await self._start_runtime(self.pod)
                exited = asyncio.create_task(self.runtime.wait())
                stopping = asyncio.create_task(self._stop.wait())
                await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not exited.done():
                    exited.cancel()
                    break
                if not await self._exited(exited.result()):
                    break
            await self._terminate()
        except Exception:
            log.exception("pod worker for %s/%s failed", self.namespace, self.name)
        finally:
            if self.runtime is not None:
                with contextlib.suppress(Exception):
                    await self.runtime.stop(0)
            self.kubelet.ips.release(self.ip)
            self.kubelet.workers.pop(self.uid, None)

    def _allocate_ip(self, pod: dict[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        base = self.kubelet.base_env(pod, self.kubelet.pod_dir(pod))
        self.ip = self.kubelet.ips.allocate(
            container_port(container, container_env(pod, container, base))
        )

    async def _start_runtime(self, pod: dict[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        home = self.kubelet.pod_dir(pod)
        os.makedirs(home, exist_ok=True)
        base = self.kubelet.base_env(pod, home)
        seen = copy.deepcopy(pod)  # fieldRefs see the IPs this start will report
        seen.setdefault("status", {}).update(podIP=self.ip, hostIP=self.host_ip)
        env = container_env(seen, container, base)
        port = container_port(container, env)
        if self.kubelet.mode == "stub":
            self.runtime = StubRuntime(self.ip, port, pod)
        else:
            command = (container.get("command") or []) + (container.get("args") or [])
            argv = [expand(a, env) for a in command] or list(self.kubelet.default_command)
            argv, env = rewrite_for_pod_ip(argv, env, self.ip)
            workdir = container.get("workingDir") or ""
            log_path = home + ".log"
            with open(log_path, "a") as log_file:
                log_file.write(f"$ {shlex.join(argv)}  # pod IP {self.ip}\n")
            self.runtime = ProcessRuntime(
                argv, env, workdir if os.path.isdir(workdir) else home, log_path
            )
        await self.runtime.start()
        name = container["name"]
        if self.restarts == 0:
            image = container.get("image", "")
            self._event(
                "Normal", "Pulled", f'Container image "{image}" already present on machine', name
            )
            self._event("Normal", "Created", f"Created container: {name}", name)
        if self.runtime.start_error:
            self._event("Warning", "Failed", self.runtime.start_error, name)
            return
        self._update(self._started(running=True))
        self._event("Normal", "Started", f"Started container {name}", name)

    async def _exited(self, code: int) -> bool:
        """The container exited by itself; return True to restart it."""
        pod = self.pod
        if pod is None:
            return False
        policy = pod["spec"].get("restartPolicy", "Always")
        restart = policy == "Always" or (policy == "OnFailure" and code != 0)
        self._update(lambda p: podstatus.set_terminated(p, code, final=not restart))
        if not restart:
            await self._stop.wait()  # stay until deleted (the API server removes finished pods)
            return False
        container = pod["spec"]["containers"][0]["name"]
        self._event(
            "Warning",
            "BackOff",
            f"Back-off restarting failed container {container} in pod "
            f"{self.name}_{self.namespace}({self.uid})",
            container,
        )
        await self._sleep_or_stop(min(self.kubelet.restart_backoff * 2**self.restarts, 300.0))
        if self._stop.is_set():
            return False
        self.restarts += 1
        return True

    async def _terminate(self) -> None:
        pod = self.pod
        if self.gone or pod is None:
            if self.runtime is not None:
                await self.runtime.stop(self.grace if self.kubelet.stopping else 0)
            if not self.kubelet.stopping:
                self.store.remove("pods", self.namespace, self.name)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase not in ("Succeeded", "Failed") and self.runtime is not None:
            container = pod["spec"]["containers"][0]["name"]
            self._event("Normal", "Killing", f"Stopping container {container}", container)
            code = await self.runtime.stop(self.grace)
            self._update(lambda p: podstatus.set_terminated(p, code, final=True))
        if self.pod is not None:
            self.store.remove("pods", self.namespace, self.name)
