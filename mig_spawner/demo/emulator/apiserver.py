"""The HTTP API server: core/v1 over plain HTTP on a loopback address, as kubernetes_asyncio
and KubeSpawner call it.

Routes (``{r}`` is any plural in :data:`store.KINDS`): ``/api/v1/namespaces/{ns}/{r}``
(list, watch, create, deletecollection), ``/api/v1/namespaces/{ns}/{r}/{name}`` (get, put,
patch, delete) and its ``/status`` subresource, ``/api/v1/{r}`` (list and watch across all
namespaces; create for cluster-scoped kinds), ``/api/v1/{nodes,namespaces}/{name}[/status]``,
plus discovery (``/version``, ``/api``, ``/api/v1``, ``/apis``) and ``/healthz``.

Watches with ``allowWatchBookmarks=true`` get a BOOKMARK every :attr:`ApiServer.bookmark_interval`
seconds and one just before they time out, carrying the current resourceVersion.

Every request is appended to :attr:`ApiServer.requests` as ``(method, path, params)`` before
anything else happens, so tests can list exactly the calls a component made. Faults added
with :meth:`ApiServer.inject_faults` answer matching requests with an error ``Status`` (and/or
delay them) instead of serving them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .patch import apply_patch
from .selectors import Selector
from .status import ApiError, bad_request, status_object
from .store import ABORT, CLOSE, KINDS, Store, Watcher

log = logging.getLogger(__name__)

KUBERNETES_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-emulated"}
DEFAULT_WATCH_TIMEOUT = 1800  # the API server's --min-request-timeout
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_SHORT_NAMES = {
    "pods": ["po"],
    "nodes": ["no"],
    "events": ["ev"],
    "namespaces": ["ns"],
    "services": ["svc"],
    "persistentvolumeclaims": ["pvc"],
    "configmaps": ["cm"],
    "serviceaccounts": ["sa"],
}
_STATUS_SUBRESOURCES = ("pods", "nodes", "namespaces", "services", "persistentvolumeclaims")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(obj), status=status, content_type="application/json")


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


@dataclass
class Fault:
    """A fault rule: requests whose path starts with ``path_prefix`` (and whose method is
    ``method``, if given; watches only or never, if ``watch`` is given) are delayed by
    ``delay`` seconds and then, if ``status`` is set, answered with that error code. ``count``
    is how many requests it hits (``None``: until cleared)."""

    path_prefix: str = "/"
    status: int | None = 500
    count: int | None = 1
    method: str | None = None
    watch: bool | None = None
    delay: float = 0.0
    message: str = "injected fault"
    #: with ``status=None``: carried out after the delay even if the client has gone by
    #: then, as a real API server carries out a request it has received
    carried_out: bool = False
    hits: int = 0

    def take(self, method: str, path: str, is_watch: bool) -> bool:
        if not path.startswith(self.path_prefix):
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        if self.watch is not None and self.watch != is_watch:
            return False
        if self.count is not None and self.hits >= self.count:
            return False
        self.hits += 1
        return True


class ApiServer:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.faults: list[Fault] = []
        self.streams: dict[Watcher, web.Request] = {}
        self.app = web.Application(middlewares=[self._middleware], client_max_size=64 * 2**20)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner: web.AppRunner | None = None
        self.host, self.port = "127.0.0.1", 0
        #: Seconds between BOOKMARK events on watches that allow them (one is also sent just
        #: before a watch times out).
        self.bookmark_interval = 60.0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            handler_cancellation=True,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        self.host, self.port = self._runner.addresses[0][:2]

    async def stop(self) -> None:
        self.break_watches(abrupt=False)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def inject_faults(self, **kwargs: Any) -> Fault:
        fault = Fault(**kwargs)
        self.faults.append(fault)
        return fault

    def break_watches(self, abrupt: bool = True) -> int:
        """Close every open watch stream: abruptly (connection reset mid-stream) or cleanly
        (as when ``timeoutSeconds`` runs out). Returns how many were closed."""
        watchers = list(self.streams)
        for watcher in watchers:
            watcher.close(ABORT if abrupt else CLOSE)
        return len(watchers)

    # -- plumbing --------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        params = dict(request.query)
        self.requests.append((request.method, request.path, params))
        is_watch = _flag(params.get("watch"))
        for fault in self.faults:
            if fault.take(request.method, request.path, is_watch):
                if fault.carried_out and not fault.status:
                    await request.read()  # all of it arrived: the request is in
                    return await asyncio.shield(self._later(fault.delay, request, handler))
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status:
                    return _json(status_object(fault.status, fault.message), fault.status)
                break
        return await self._serve(request, handler, params)

    async def _later(self, delay: float, request, handler) -> web.StreamResponse:
        await asyncio.sleep(delay)
        return await self._serve(request, handler, dict(request.query))

    async def _serve(self, request: web.Request, handler: Any, params: dict) -> web.StreamResponse:
        try:
            if params.get("dryRun") and request.method != "GET":
                raise ApiError(400, "dryRun is not supported by the emulated API server")
            return await handler(request)
        except ApiError as exc:
            return _json(exc.status(), exc.code)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise bad_request(
                f"the body of the request could not be decoded as JSON: {exc}"
            ) from None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if method == "GET" and len(parts) <= 2:
            discovery = self._discovery(parts)
            if discovery is not None:
                return discovery
        if parts[:2] != ["api", "v1"] or len(parts) < 3:
            raise _no_route()
        rest = parts[2:]
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] in KINDS and KINDS[rest[2]][1]:
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        if plural not in KINDS or len(rest) > 3:
            raise _no_route()
        namespaced = KINDS[plural][1]
        if namespaced and len(rest) > 1 and namespace is None:
            raise _no_route()
        if len(rest) == 1:
            if method == "GET":
                if _flag(request.query.get("watch")):
                    return await self._watch(request, plural, namespace)
                return self._list(request, plural, namespace)
            if method == "POST":
                if namespaced and namespace is None:
                    raise _no_route(405)
                return _json(self.store.create(plural, namespace, await self._body(request)), 201)
            if method == "DELETE":
                return self._delete_collection(request, plural, namespace)
            raise _no_route(405)
        name = rest[1]
        sub = rest[2] if len(rest) == 3 else None
        if sub is not None and (sub != "status" or plural not in _STATUS_SUBRESOURCES):
            raise _no_route()
        if method == "GET":
            return _json(self.store.get(plural, namespace, name))
        if method == "PUT":
            body = await self._body(request)
            return _json(self.store.replace(plural, namespace, name, body, sub))
        if method == "PATCH":
            current = self.store.get(plural, namespace, name)
            patch = await self._body(request)
            patched = apply_patch(current, patch, request.headers.get("Content-Type", ""))
            patched.setdefault("metadata", {}).pop("resourceVersion", None)
            if isinstance(patch, dict) and (patch.get("metadata") or {}).get("resourceVersion"):
                patched["metadata"]["resourceVersion"] = patch["metadata"]["resourceVersion"]
            return _json(self.store.replace(plural, namespace, name, patched, sub))
        if method == "DELETE" and sub is None:
            return await self._delete(request, plural, namespace, name)
        raise _no_route(405)

    # -- verbs -----------------------------------------------------------------------------
    def _selector(self, request: web.Request, plural: str) -> Selector:
        return Selector.parse(
            plural, request.query.get("labelSelector"), request.query.get("fieldSelector")
        )

    def _list(self, request: web.Request, plural: str, namespace: str | None) -> web.Response:
        items = self.store.list(plural, namespace, self._selector(request, plural))
        metadata: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        token = request.query.get("continue")
        if token:
            try:
                start = json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid") from None
            items = [o for o in items if _key(o) > tuple(start)]
        limit = int(request.query.get("limit") or 0)
        if limit > 0 and len(items) > limit:
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
            start = json.dumps({"start": list(_key(items[-1]))}).encode()
            metadata["continue"] = base64.urlsafe_b64encode(start).decode()
        kind = KINDS[plural][0]
        listed = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
        return _json(
            {"kind": f"{kind}List", "apiVersion": "v1", "metadata": metadata, "items": listed}
        )

    async def _watch(self, request: web.Request, plural: str, namespace: str | None):
        selector = self._selector(request, plural)
        timeout = int(request.query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            watcher = self.store.watch(
                plural, namespace, selector, request.query.get("resourceVersion")
            )
        except ApiError as exc:
            if exc.code != 410:
                raise
            await response.prepare(request)
            await response.write(_dumps({"type": "ERROR", "object": exc.status()}) + b"\n")
            await response.write_eof()
            return response
        self.streams[watcher] = request
        bookmarks = _flag(request.query.get("allowWatchBookmarks"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + self.bookmark_interval
        try:
            await response.prepare(request)
            while True:
                now = loop.time()
                if now >= deadline:
                    break
                if bookmarks and now >= next_bookmark:
                    await response.write(self._bookmark(plural))
                    next_bookmark = now + self.bookmark_interval
                wake = min(deadline, next_bookmark) if bookmarks else deadline
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), wake - now)
                except asyncio.TimeoutError:
                    continue
                if item == CLOSE:
                    break
                if item == ABORT:
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                await response.write(item)  # type: ignore[arg-type]
            if bookmarks:  # like the API server, a last bookmark before the watch times out
                await response.write(self._bookmark(plural))
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            self.store.unwatch(watcher)
            self.streams.pop(watcher, None)
        return response

    def _bookmark(self, plural: str) -> bytes:
        """A BOOKMARK: every change up to this resourceVersion has been sent."""
        kind = KINDS[plural][0]
        obj = {
            "kind": kind,
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self.store.rv)},
        }
        return _dumps({"type": "BOOKMARK", "object": obj}) + b"\n"

    async def _delete(self, request: web.Request, plural: str, namespace: str | None, name: str):
        body = await self._body(request)
        grace = request.query.get("gracePeriodSeconds")
        if grace is None and isinstance(body, dict):
            grace = body.get("gracePeriodSeconds")
        preconditions = (body.get("preconditions") if isinstance(body, dict) else None) or {}
        current = self.store.get(plural, namespace, name)
        uid, rv = preconditions.get("uid"), preconditions.get("resourceVersion")
        if (uid and uid != current["metadata"]["uid"]) or (
            rv and rv != current["metadata"]["resourceVersion"]
        ):
            raise ApiError(
                409,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                f"{current['metadata']['uid']}",
                reason="Conflict",
            )
        deleted = self.store.delete(plural, namespace, name, None if grace is None else int(grace))
        if plural in ("pods", "namespaces"):
            return _json(deleted)
        return _json(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "kind": plural, "uid": deleted["metadata"]["uid"]},
            }
        )

    def _delete_collection(self, request: web.Request, plural: str, namespace: str | None):
        grace = request.query.get("gracePeriodSeconds")
        items = self.store.list(plural, namespace, self._selector(request, plural))
        deleted = [
            self.store.delete(
                plural,
                o["metadata"].get("namespace"),
                o["metadata"]["name"],
                None if grace is None else int(grace),
            )
            for o in items
        ]
        kind = KINDS[plural][0]
        return _json(
            {
                "kind": f"{kind}List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.store.rv)},
                "items": deleted,
            }
        )

    def _discovery(self, parts: list[str]) -> web.Response | None:
        if parts == ["version"]:
            return _json(
                {
                    **KUBERNETES_VERSION,
                    "gitCommit": "emulated",
                    "gitTreeState": "clean",
                    "buildDate": "2024-08-13T00:00:00Z",
                    "goVersion": "go1.22.5",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                }
            )
        if parts in (["healthz"], ["readyz"], ["livez"]):
            return web.Response(text="ok")
        if parts == []:
            return _json(
                {"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]}
            )
        if parts == ["api"]:
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}
                    ],
                }
            )
        if parts == ["apis"]:
            return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if parts == ["api", "v1"]:
            resources = []
            for plural, (kind, namespaced) in KINDS.items():
                resources.append(
                    {
                        "name": plural,
                        "singularName": kind.lower(),
                        "namespaced": namespaced,
                        "kind": kind,
                        "verbs": _VERBS,
                        "shortNames": _SHORT_NAMES.get(plural, []),
                    }
                )
                if plural in _STATUS_SUBRESOURCES:
                    resources.append(
                        {
                            "name": f"{plural}/status",
                            "singularName": "",
                            "namespaced": namespaced,
                            "kind": kind,
                            "verbs": ["get", "patch", "update"],
                        }
                    )
            return _json({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})
        return None


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _no_route(code: int = 404) -> ApiError:
    if code == 405:
        return ApiError(405, "the server does not allow this method on the requested resource")
    return ApiError(404, "the server could not find the requested resource")
