"""`EmulatedCluster`: the API server, scheduler, controllers and kubelet wired together."""

from __future__ import annotations

import asyncio
import copy
import inspect
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .apiserver import ApiServer, Fault
from .clusterfile import ClusterSpec, NodeSpec, load_cluster_file, load_cluster_spec
from .controllers import Controllers, sync_node_taints
from .events import EventRecorder
from .kubelet import Kubelet
from .nodelabels import node_object
from .scheduler import Scheduler
from .status import ApiError
from .store import Store, now

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def to_json(obj: Any) -> dict[str, Any]:
    """A plain JSON dict from a dict or a kubernetes_asyncio model (``V1Pod``, ``V1Node``...),
    serialized by kubernetes_asyncio's own ``ApiClient.sanitize_for_serialization``. (The
    method needs no connection; a fully constructed ``ApiClient()`` would open an aiohttp
    connector, which needs a running loop and closing.)"""
    if isinstance(obj, dict):
        return copy.deepcopy(obj)
    # imported here: kubernetes_asyncio.client takes seconds to import and to tear down
    from kubernetes_asyncio.client import ApiClient

    serializer = ApiClient.__new__(ApiClient)
    return serializer.sanitize_for_serialization(obj)


def _coerce_spec(spec: ClusterSpec | dict | str | Path | None) -> ClusterSpec:
    if spec is None:
        return ClusterSpec()
    if isinstance(spec, ClusterSpec):
        return spec
    if isinstance(spec, dict):
        return load_cluster_spec(spec)
    return load_cluster_file(spec)


class EmulatedCluster:
    """An emulated Kubernetes cluster with MIG GPU nodes, served over HTTP on loopback.

    ``spec``: a :class:`ClusterSpec`, a cluster-file dict, or a path to a cluster YAML file.
    ``kubelet``: ``"stub"`` (pods answer HTTP with a stub server) or ``"process"`` (pods run
    their first container as a real process). ``log_dir``: where pod logs and home
    directories go (default: a temporary directory removed on stop). ``auto_namespaces``:
    create a missing namespace on first use (a real API server answers 404 instead; pass
    ``False`` for that). ``namespaces``: namespaces to create up front.
    """

    def __init__(
        self,
        spec: ClusterSpec | dict | str | Path | None = None,
        *,
        kubelet: str = "stub",
        host: str = "127.0.0.1",
        port: int = 0,
        history_size: int = 1000,
        auto_namespaces: bool = True,
        namespaces: tuple[str, ...] | list[str] = (),
        default_command: list[str] | None = None,
        restart_backoff: float = 10.0,
        start_delay: float = 0.0,
        log_dir: str | Path | None = None,
    ) -> None:
        if not host.startswith("127."):
            raise ValueError(
                f"the emulated cluster only listens on loopback (127.0.0.0/8), not {host!r}"
            )
        self.spec = _coerce_spec(spec)
        self.host, self._port = host, port
        self.store = Store(history_size=history_size, auto_namespaces=auto_namespaces)
        self.recorder = EventRecorder(self.store)
        self.api = ApiServer(self.store)
        self._own_log_dir = log_dir is None
        self.log_dir = str(log_dir) if log_dir else tempfile.mkdtemp(prefix="mig-emulator-")
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        self.kubelet = Kubelet(
            self.store,
            self.recorder,
            kubelet,
            log_dir=self.log_dir,
            api_host=host,
            default_command=default_command,
            restart_backoff=restart_backoff,
            start_delay=start_delay,
        )
        self.scheduler = Scheduler(self.store, self.recorder)
        self.controllers = Controllers(self.store)
        self._node_ips = 0
        self._started = False
        for name in (*SYSTEM_NAMESPACES, *self.spec.namespaces, *namespaces):
            if self.store.find("namespaces", None, name) is None:
                self.store.create("namespaces", None, {"metadata": {"name": name}})
        for node in self.spec.nodes:
            self.add_node(node)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> EmulatedCluster:
        if self._started:
            return self
        await self.api.start(self.host, self._port)
        self.scheduler.start()
        self.controllers.start()
        self.kubelet.start(self.api.port)
        self._started = True
        return self

    async def stop(self) -> None:
        """Kill every pod process and stub server, stop the control plane, close the server."""
        if not self._started:
            await self.kubelet.stop(0)
        else:
            self._started = False
            await self.kubelet.stop()
            await self.scheduler.stop()
            await self.controllers.stop()
            await self.api.stop()
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    async def __aenter__(self) -> EmulatedCluster:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self.api.port

    @property
    def url(self) -> str:
        return f"http://{self.api.host}:{self.api.port}"

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        """Write a kubeconfig whose current context ``emulated`` points at :attr:`url`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulated", "cluster": {"server": self.url}}],
            "users": [{"name": "emulated", "user": {"token": "emulated"}}],
            "contexts": [
                {
                    "name": "emulated",
                    "context": {"cluster": "emulated", "user": "emulated", "namespace": namespace},
                }
            ],
            "current-context": "emulated",
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    async def wait_for(
        self,
        predicate: Callable[[EmulatedCluster], Any],
        timeout: float = 10,
        interval: float = 0.02,
    ) -> Any:
        """Wait until ``predicate(cluster)`` (sync or async) is truthy and return its value;
        :class:`TimeoutError` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s: {predicate!r}")
            await asyncio.sleep(interval)

    # -- views -----------------------------------------------------------------------------
    @property
    def pods(self) -> list[dict[str, Any]]:
        """Copies of the stored pods, by namespace and name (see :meth:`pod` for one)."""
        return [copy.deepcopy(p) for p in self.store.list("pods")]

    @property
    def nodes(self) -> list[dict[str, Any]]:
        """Copies of the stored nodes, by name (see :meth:`node` for one)."""
        return [copy.deepcopy(n) for n in self.store.list("nodes")]

    @property
    def events(self) -> list[dict[str, Any]]:
        """Copies of all events, oldest first."""
        events = [copy.deepcopy(e) for e in self.store.list("events")]
        return sorted(events, key=lambda e: int(e["metadata"]["resourceVersion"]))

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        found = self.store.find("pods", namespace, name)
        return copy.deepcopy(found) if found else None

    def node(self, name: str) -> dict[str, Any] | None:
        found = self.store.find("nodes", None, name)
        return copy.deepcopy(found) if found else None

    def pod_log(self, name: str, namespace: str = "default") -> str:
        """What a process-mode pod wrote (stdout and stderr), even after it is gone."""
        logs = sorted(
            Path(self.log_dir).glob(f"{namespace}_{name}_*.log"), key=lambda p: p.stat().st_mtime
        )
        return logs[-1].read_text(errors="replace") if logs else ""

    # -- changing the cluster --------------------------------------------------------------
    def create_pod(self, pod: Any, namespace: str = "default") -> dict[str, Any]:
        """Create a pod (a dict or a ``V1Pod``) as the API server would, without an HTTP
        request (so it is not in :attr:`requests`). Returns a copy of the stored pod."""
        return copy.deepcopy(self.store.create("pods", namespace, to_json(pod)))

    def delete_pod(self, name: str, namespace: str = "default", grace: int | None = None) -> None:
        """Delete a pod as the API server would (gracefully unless ``grace=0``)."""
        self.store.delete("pods", namespace, name, grace)

    def add_node(self, node: Any) -> dict[str, Any]:
        """Add a node: a :class:`NodeSpec`, a cluster-file node entry (``{"name": ..., "gpu":
        ...}``; with ``count`` the copies are added and the first returned), or a full Node
        object (a dict with ``metadata``, or a ``V1Node``). Returns a copy of the stored Node."""
        if not isinstance(node, dict | NodeSpec):
            node = to_json(node)
        if isinstance(node, dict) and "metadata" in node:
            obj = copy.deepcopy(node)
        else:
            if isinstance(node, dict):
                added = [self.add_node(s) for s in load_cluster_spec({"nodes": [node]}).nodes]
                return added[0]
            self._node_ips += 1
            obj = node_object(node, f"127.1.{self._node_ips // 250}.{self._node_ips % 250 + 1}")
        sync_node_taints(obj)
        return copy.deepcopy(self.store.create("nodes", None, obj))

    def cordon(self, name: str, unschedulable: bool = True) -> dict[str, Any]:
        """``kubectl cordon`` (or uncordon with ``unschedulable=False``)."""

        def change(node: dict[str, Any]) -> None:
            if unschedulable:
                node.setdefault("spec", {})["unschedulable"] = True
            else:
                node.setdefault("spec", {}).pop("unschedulable", None)

        return self._mutate_node(name, change)

    def uncordon(self, name: str) -> dict[str, Any]:
        return self.cordon(name, unschedulable=False)

    def set_node_ready(self, name: str, ready: bool = True) -> dict[str, Any]:
        def change(node: dict[str, Any]) -> None:
            for condition in node.setdefault("status", {}).setdefault("conditions", []):
                if condition.get("type") == "Ready":
                    condition.update(
                        status="True" if ready else "False",
                        lastTransitionTime=now(),
                        reason="KubeletReady" if ready else "KubeletNotReady",
                    )

        return self._mutate_node(name, change)

    def label_node(self, name: str, labels: dict[str, str | None]) -> dict[str, Any]:
        """Set (or, with ``None``, remove) node labels."""

        def change(node: dict[str, Any]) -> None:
            current = node["metadata"].setdefault("labels", {})
            for key, value in labels.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value

        return self._mutate_node(name, change)

    def _mutate_node(self, name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        def apply(node: dict[str, Any]) -> None:
            change(node)
            sync_node_taints(node)

        updated = self.store.mutate("nodes", None, name, apply)
        if updated is None:
            raise ApiError(404, f'nodes "{name}" not found')
        return copy.deepcopy(updated)

    def delete_node(self, name: str) -> None:
        """Remove a node; its pods are garbage-collected (deleted at once)."""
        self.store.delete("nodes", None, name)

    def create_namespace(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.store.create("namespaces", None, {"metadata": {"name": name}}))

    # -- test hooks ------------------------------------------------------------------------
    @property
    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """Every API request so far: ``(method, path, query params)``."""
        return self.api.requests

    def clear_requests(self) -> None:
        self.api.requests.clear()

    def inject_faults(
        self,
        path_prefix: str = "/",
        status: int | None = 500,
        count: int | None = 1,
        method: str | None = None,
        watch: bool | None = None,
        delay: float = 0.0,
        message: str = "injected fault",
        carried_out: bool = False,
    ) -> Fault:
        """Answer the next ``count`` (``None``: all) matching requests with ``status`` (after
        ``delay`` seconds; ``status=None`` only delays; ``carried_out``: a delayed request is
        carried out even if its client gave up meanwhile). Returns the rule (``.hits``)."""
        return self.api.inject_faults(
            path_prefix=path_prefix,
            status=status,
            count=count,
            method=method,
            watch=watch,
            delay=delay,
            message=message,
            carried_out=carried_out,
        )

    def clear_faults(self) -> None:
        self.api.faults.clear()

    def break_watches(self, abrupt: bool = True) -> int:
        """Close every open watch stream (abruptly by default); returns how many."""
        return self.api.break_watches(abrupt)

    def compact_history(self) -> None:
        """Forget the watch history, so watches from any earlier resourceVersion get 410."""
        self.store.compact()
