"""The node agent's view of a real API server: a client, and an informer-style store.

:class:`ApiClient` speaks to the API server with the kubeconfig's credential.
:class:`MirrorStore` is a local copy of pods and nodes (list, then watch from the list's
resourceVersion, relist on 410) with the interface the emulator's kubelet expects of its
store; its writes become API calls: ``pods/status`` merge patches, Event creates and
patches, and the final ``DELETE`` (grace period 0, guarded by the pod's uid) that
completes a deletion.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import yaml

from ..emulator.store import Change, now

log = logging.getLogger("mig_spawner.demo.controlplane.agent")


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
