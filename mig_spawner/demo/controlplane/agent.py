"""Simulated GPU nodes on a real Kubernetes API server (the role kwok plays, with real
processes): ``python -m mig_spawner.demo.controlplane.agent --kubeconfig K CLUSTER.yaml``.

The agent

* registers one Node per node of the cluster file (the same files the demo and the
  emulator use, :mod:`mig_spawner.demo.emulator.clusterfile`), labelled and with capacity exactly
  as :func:`mig_spawner.demo.emulator.node_object` builds them (GPU Feature Discovery and NVIDIA
  device-plugin labels, ``nvidia.com/mig-*`` / ``nvidia.com/gpu`` capacity);
* keeps them alive as a kubelet does: a ``coordination.k8s.io`` Lease per node in
  ``kube-node-lease`` renewed every few seconds, so the node lifecycle controller leaves
  them Ready and untainted;
* runs every pod that the real kube-scheduler binds to them with the emulator's own
  :class:`~mig_spawner.demo.emulator.kubelet.Kubelet` (stub HTTP servers or real processes, each on
  its own loopback address), which here sees the API server through :class:`MirrorStore`:
  an informer-style local copy of pods and nodes (list, then watch from the list's
  resourceVersion, relist on 410) whose writes become API calls: ``pods/status`` merge
  patches, Event creates and patches, and, at the end of a pod's termination, the final
  ``DELETE`` with grace period 0 (guarded by the pod's uid) that completes a deletion.

It authenticates with the kubeconfig it is given (the harness's admin credential).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import json
import logging
import os
import signal
import ssl
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import yaml

from ..emulator.clusterfile import ClusterSpec, load_cluster_file, shipped_cluster_file
from ..emulator.events import EventRecorder
from ..emulator.kubelet import Kubelet
from ..emulator.nodelabels import node_object
from ..emulator.store import Change, now, now_micro

log = logging.getLogger("mig_spawner.demo.controlplane.agent")

LEASE_SECONDS = 40
RENEW_EVERY = 5.0


class ApiClient:
    """A small async client for the API server, from a kubeconfig (certificate or token)."""

    def __init__(self, kubeconfig: str | Path) -> None:
        config = yaml.safe_load(Path(kubeconfig).read_text())
        ctx_name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server = cluster["server"].rstrip("/")
        self._tmp = tempfile.TemporaryDirectory(prefix="mig-agent-")
        self.ssl = ssl.create_default_context()
        if cluster.get("certificate-authority-data"):
            self.ssl.load_verify_locations(
                cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
            )
        if user.get("client-certificate-data"):
            cert = Path(self._tmp.name, "client.crt")
            key = Path(self._tmp.name, "client.key")
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            self.ssl.load_cert_chain(str(cert), str(key))
        self.headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
        self.session: aiohttp.ClientSession | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        url = urlparse(self.server)
        return url.hostname or "127.0.0.1", url.port or 443

    async def __aenter__(self) -> ApiClient:
        self.session = aiohttp.ClientSession(
            headers=self.headers,
            connector=aiohttp.TCPConnector(ssl=self.ssl, limit=20),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
        self._tmp.cleanup()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        assert self.session is not None
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(
            method,
            self.server + path,
            data=data,
            headers=headers,
            params=params,
            timeout=aiohttp.ClientTimeout(total=30),
        ) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def watch(self, path: str, resource_version: str):
        """Yield watch events (dicts) until the server ends the stream."""
        assert self.session is not None
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
        }
        async with self.session.get(
            self.server + path, params=params, timeout=aiohttp.ClientTimeout(total=None)
        ) as resp:
            if resp.status != 200:
                yield {"type": "ERROR", "object": {"code": resp.status}}
                return
            async for line in resp.content:
                if line.strip():
                    yield json.loads(line)


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``old`` status into ``new`` (top-level keys; lists and
    maps under them are replaced whole, which is what merge patch does to lists)."""
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


class MirrorStore:
    """The part of :class:`mig_spawner.demo.emulator.store.Store` that the emulator's kubelet and
    event recorder use, backed by a real API server (see the module docstring)."""

    def __init__(self, api: ApiClient, owned_nodes: set[str]) -> None:
        self.api = api
        self.owned_nodes = owned_nodes
        self.objects: dict[str, dict[tuple[str | None, str], dict[str, Any]]] = {
            "pods": {},
            "nodes": {},
            "events": {},
        }
        self.listeners: list[Callable[[Change], None]] = []
        self.writes: asyncio.Queue = asyncio.Queue()
        self.inflight: dict[tuple[str | None, str], int] = {}
        self.synced = asyncio.Event()
        self._rv = 0

    # -- the Store interface the kubelet uses ---------------------------------------------------

    def add_listener(self, listener: Callable[[Change], None]) -> None:
        self.listeners.append(listener)

    def find(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        if plural == "namespaces":  # the API server itself refuses events in missing ones
            return {"metadata": {"name": name}}
        return self.objects.get(plural, {}).get((namespace, name))

    def list(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        objs = list(self.objects.get(plural, {}).values())
        return [o for o in objs if namespace is None or o["metadata"].get("namespace") == namespace]

    def mutate(
        self, plural: str, namespace: str | None, name: str, change: Callable[[dict], None]
    ) -> dict[str, Any] | None:
        current = self.find(plural, namespace, name)
        if current is None:
            return None
        new = copy.deepcopy(current)
        change(new)
        self.objects[plural][(namespace, name)] = new
        if plural == "pods":
            patch = status_patch(current.get("status") or {}, new.get("status") or {})
            if patch:
                self._queue((namespace, name), self._patch_pod_status, namespace, name, patch)
        elif plural == "events":
            body = {"count": new.get("count"), "lastTimestamp": new.get("lastTimestamp")}
            self._queue(None, self._patch_event, namespace, name, body)
        return new

    def create(self, plural: str, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if plural != "events":
            raise NotImplementedError(plural)
        event = copy.deepcopy(body)
        stamp = now()
        event.update(apiVersion="v1", kind="Event", count=1)
        event.setdefault("firstTimestamp", stamp)
        event.setdefault("lastTimestamp", stamp)
        self.objects["events"][(namespace, event["metadata"]["name"])] = event
        self._queue(None, self._create_event, namespace, event)
        return event

    def remove(self, plural: str, namespace: str | None, name: str) -> None:
        obj = self.objects.get(plural, {}).pop((namespace, name), None)
        if plural == "pods" and obj is not None:
            uid = obj["metadata"]["uid"]
            self._queue((namespace, name), self._delete_pod, namespace, name, uid)

    # -- writes to the API server, in order --------------------------------------------------

    def _queue(self, key, fn, *args) -> None:
        if key is not None:
            self.inflight[key] = self.inflight.get(key, 0) + 1
        self.writes.put_nowait((key, fn, args))

    async def run_writes(self) -> None:
        while True:
            key, fn, args = await self.writes.get()
            try:
                await fn(*args)
            except Exception:
                log.exception("API write %s%s failed", fn.__name__, args[:2])
            finally:
                if key is not None:
                    left = self.inflight.get(key, 1) - 1
                    if left:
                        self.inflight[key] = left
                    else:
                        self.inflight.pop(key, None)

    async def _patch_pod_status(self, namespace: str, name: str, patch: dict) -> None:
        status, body = await self.api.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{name}/status",
            {"status": patch},
            "application/merge-patch+json",
        )
        if status not in (200, 404):
            log.warning("pod %s/%s status patch: %s %s", namespace, name, status, body)

    async def _delete_pod(self, namespace: str, name: str, uid: str) -> None:
        status, body = await self.api.request(
            "DELETE",
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": uid},
            },
        )
        if status not in (200, 202, 404, 409):
            log.warning("pod %s/%s final delete: %s %s", namespace, name, status, body)

    async def _create_event(self, namespace: str, event: dict) -> None:
        status, body = await self.api.request(
            "POST", f"/api/v1/namespaces/{namespace}/events", event
        )
        if status != 201:
            log.info("event %s: %s %s", event["metadata"]["name"], status, body)

    async def _patch_event(self, namespace: str, name: str, body: dict) -> None:
        await self.api.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/events/{name}",
            body,
            "application/merge-patch+json",
        )

    # -- reading from the API server (an informer) ---------------------------------------------

    def _emit(self, plural: str, type_: str, obj: dict, old: dict | None) -> None:
        self._rv += 1
        change = Change(self._rv, plural, type_, obj, old)
        for listener in self.listeners:
            try:
                listener(change)
            except Exception:
                log.exception("listener failed on %s %s", type_, plural)

    def _apply(self, plural: str, type_: str, obj: dict) -> None:
        meta = obj["metadata"]
        if plural == "nodes" and meta["name"] not in self.owned_nodes:
            return  # another agent's (or a real kubelet's) node: not ours to run pods on
        key = (meta.get("namespace"), meta["name"])
        objects = self.objects[plural]
        old = objects.get(key)
        if type_ == "DELETED":
            if old is not None and old["metadata"].get("uid") == meta.get("uid"):
                del objects[key]
            self._emit(plural, "DELETED", obj, old)
            return
        if plural == "pods" and self.inflight.get(key) and old is not None:
            # our own status writes are still on their way: keep the status we wrote
            obj = {**obj, "status": old.get("status")}
        objects[key] = obj
        self._emit(plural, "MODIFIED" if old is not None else "ADDED", obj, old)

    async def informer(self, plural: str, path: str) -> None:
        while True:
            try:
                status, body = await self.api.request("GET", path)
                if status != 200:
                    raise RuntimeError(f"list {path}: {status} {body}")
                listed = {
                    (o["metadata"].get("namespace"), o["metadata"]["name"]): o
                    for o in body["items"]
                }
                for key, old in list(self.objects[plural].items()):
                    if key not in listed:
                        self._apply(plural, "DELETED", old)
                for obj in listed.values():
                    obj.setdefault("kind", "Pod" if plural == "pods" else "Node")
                    obj.setdefault("apiVersion", "v1")
                    self._apply(plural, "ADDED", obj)
                if plural == "pods":
                    self.synced.set()
                rv = body["metadata"]["resourceVersion"]
                while True:
                    async for event in self.api.watch(path, rv):
                        type_, obj = event["type"], event["object"]
                        if type_ == "ERROR":
                            raise _Relist(obj)
                        rv = obj["metadata"]["resourceVersion"]
                        if type_ != "BOOKMARK":
                            self._apply(plural, type_, obj)
            except _Relist as exc:
                log.info("%s watch ended (%s); relisting", plural, exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s informer: %s; relisting in 1s", plural, exc)
                await asyncio.sleep(1)


class _Relist(Exception):
    pass


class NodeAgent:
    """Registers the cluster file's nodes, keeps them alive and runs their pods."""

    def __init__(
        self,
        api: ApiClient,
        spec: ClusterSpec,
        *,
        kubelet: str = "stub",
        log_dir: str,
        default_command: list[str] | None = None,
        restart_backoff: float = 10.0,
    ) -> None:
        self.api, self.spec = api, spec
        self.node_names = {n.name for n in spec.nodes}
        self.store = MirrorStore(api, self.node_names)
        self.recorder = EventRecorder(self.store)  # type: ignore[arg-type]
        host, port = api.host_port
        self.kubelet = Kubelet(
            self.store,  # type: ignore[arg-type]
            self.recorder,
            kubelet,
            log_dir=log_dir,
            api_host=host,
            api_port=port,
            default_command=default_command,
            restart_backoff=restart_backoff,
        )
        self.tasks: list[asyncio.Task] = []

    def node_body(self, spec) -> dict[str, Any]:
        from .launcher import K8S_VERSION

        node = node_object(spec, internal_ip="127.0.0.1")
        info = node["status"]["nodeInfo"]
        info.update(
            osImage="mig-spawner node agent",
            kernelVersion=os.uname().release,
            containerRuntimeVersion="mig-spawner-agent://1.0.0",
            kubeletVersion=K8S_VERSION,
            kubeProxyVersion=K8S_VERSION,
        )
        return node

    async def register(self) -> None:
        for spec in self.spec.nodes:
            body = self.node_body(spec)
            status, answer = await self.api.request("POST", "/api/v1/nodes", body)
            if status == 409:
                status, answer = await self.api.request(
                    "PATCH",
                    f"/api/v1/nodes/{spec.name}",
                    {"metadata": {"labels": body["metadata"]["labels"]}, "spec": body["spec"]},
                    "application/merge-patch+json",
                )
            if status not in (200, 201):
                raise RuntimeError(f"register node {spec.name}: {status} {answer}")
            status, answer = await self.api.request(
                "PATCH",
                f"/api/v1/nodes/{spec.name}/status",
                {"status": body["status"]},
                "application/merge-patch+json",
            )
            if status != 200:
                raise RuntimeError(f"node {spec.name} status: {status} {answer}")
            await self._renew_lease(spec.name, answer["metadata"]["uid"])

    async def _renew_lease(self, name: str, uid: str | None = None) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        spec = {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": now_micro(),
        }
        status, _ = await self.api.request(
            "PATCH", path, {"spec": spec}, "application/merge-patch+json"
        )
        if status == 404:
            meta: dict[str, Any] = {"name": name, "namespace": "kube-node-lease"}
            if uid:
                meta["ownerReferences"] = [
                    {"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}
                ]
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": meta,
                "spec": spec,
            }
            await self.api.request(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body
            )

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            for name in sorted(self.node_names):
                if (None, name) in self.store.objects["nodes"]:
                    try:
                        await self._renew_lease(name)
                    except Exception as exc:
                        log.warning("lease %s: %s", name, exc)

    async def start(self) -> None:
        await self.register()
        self.tasks.append(asyncio.create_task(self.store.run_writes()))
        self.tasks.append(asyncio.create_task(self.store.informer("nodes", "/api/v1/nodes")))
        await asyncio.sleep(0)
        self.tasks.append(asyncio.create_task(self.store.informer("pods", "/api/v1/pods")))
        await self.store.synced.wait()
        self.kubelet.start(self.api.host_port[1])
        self.tasks.append(asyncio.create_task(self._heartbeats()))

    async def stop(self) -> None:
        await self.kubelet.stop(grace=2.0)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _serve(args: argparse.Namespace) -> None:
    spec = load_cluster_file(args.cluster or shipped_cluster_file("demo"))
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="mig-agent-pods-")
    async with ApiClient(args.kubeconfig) as api:
        agent = NodeAgent(
            api,
            spec,
            kubelet=args.kubelet,
            log_dir=log_dir,
            default_command=args.default_command.split() if args.default_command else None,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await agent.start()
            print(f"node agent: {len(spec.nodes)} nodes registered", flush=True)
            await stop.wait()
        finally:
            await agent.stop()
            if not args.log_dir:
                import shutil

                shutil.rmtree(log_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mig_spawner.demo.controlplane.agent", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("cluster", nargs="?", help="cluster YAML file (default: the shipped demo)")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--kubelet", choices=("stub", "process"), default="stub")
    parser.add_argument("--log-dir", help="pod logs and homes (default: a temporary directory)")
    parser.add_argument("--default-command", help="command for pods that name none")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s agent %(levelname)s %(message)s",
    )
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
