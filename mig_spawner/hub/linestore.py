"""The waiting line kept in the cluster: the ConfigMap ``mig-spawner-line-<hub_id>``.

The hub's line (``hub/waiting.py``) lives in the hub's memory; so that a hub restart loses
no place and no history, :func:`attach` hooks a :class:`LineStore` to it when it is created:

- **load** the ConfigMap (key ``line.json``, the document :mod:`mig_spawner.core.linedoc`
  checks) from the hub's namespace; the places saved there become ``line.kept`` for
  ``MIGSpawner.line_restart_grace`` seconds (a re-request takes its old place), the saved
  session lengths ``line.history``;
- **save** after every change of the line (``line.subscribe``), coalesced: at most one
  write in flight, the newest document wins, at most one write per ``min_interval``
  (1 s), create-or-replace.

Nothing here raises into a spawn or ends the hub: an API error is logged once per kind
(status code or exception type, not once per write) and the write retried with backoff;
a garbled or foreign ConfigMap is logged once with its located error and the hub goes on
with an empty line, keeping what was there under ``line.rejected.json`` when it next
saves. RBAC: :data:`LINE_API_CALLS` on that one ConfigMap, in the hub's namespace
(``helm-values/rbac/role.yaml``; ``tests/deploy`` checks the two agree).

The service (``/services/mig/``) and ``mig-spawner status`` read the same ConfigMap
(:func:`read_line`): they are other processes, so the cluster is where they see the line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from traitlets import Float

from ..core.errors import InputError
from ..core.linedoc import (
    CONFIGMAP_MAX_BYTES,
    HISTORY_LIMIT,
    KEY,
    LineDoc,
    configmap_body,
    configmap_name,
    empty,
    fit,
    kept_places,
    parse_configmap,
    rejected_data,
)
from .tasks import cancel_and_wait

#: The Kubernetes API calls this module makes: (api group, resource, verb), on the one
#: ConfigMap ``mig-spawner-line-<hub_id>`` in the hub's namespace.
LINE_API_CALLS: tuple[tuple[str, str, str], ...] = (
    ("", "configmaps", "get"),
    ("", "configmaps", "create"),
    ("", "configmaps", "update"),
)

log = logging.getLogger("mig_spawner.hub.linestore")


def restart_grace_trait() -> Float:
    """``MIGSpawner.line_restart_grace`` (defined here to keep the spawner's module small)."""
    return Float(
        600.0,
        config=True,
        help="""
        Seconds a place in the waiting line is kept after a hub restart. The line is saved
        in the ConfigMap ``mig-spawner-line-<hub_id>`` in the hub's namespace; after a
        restart each waiting spawn ends with "the hub restarted: your place (#2) is kept
        for 10 min - press Start", and a new request for the same server within this time
        takes its old place. ``0`` keeps none. Places whose ``max_wait`` ran out while the
        hub was down are not kept.
        """,
    )


class ApiFailure(Exception):
    """One failed call: ``kind`` is what it is logged once under (status or type)."""

    def __init__(self, kind: str, text: str):
        super().__init__(text)
        self.kind = kind


async def _call(call, *args, timeout: float, **kwargs) -> tuple[int, Any]:
    """(status, decoded body) of one raw API call; ApiFailure for no answer at all."""
    try:
        response = await call(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
        status = response.status
        text = await response.text()
    except asyncio.CancelledError:
        raise
    except asyncio.TimeoutError:
        raise ApiFailure("timeout", f"no answer in {timeout:g} s") from None
    except Exception as e:  # connection refused, TLS, DNS, an ApiException: one line
        status = getattr(e, "status", None)
        if isinstance(status, int) and status:
            return status, _decode(getattr(e, "body", "") or "")
        raise ApiFailure(type(e).__name__, f"{type(e).__name__}: {e}".splitlines()[0]) from None
    return status, _decode(text)


def _decode(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return {"message": str(text)[:200]}


def _message(body: Any) -> str:
    return str((body or {}).get("message", "") if isinstance(body, dict) else body)[:300]


class LineStore:
    """Load and save one hub's line document; see the module's docstring."""

    def __init__(
        self,
        core_api: Any,
        *,
        namespace: str,
        hub_id: str,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        request_timeout: float = 10.0,
        min_interval: float = 1.0,
        max_backoff: float = 30.0,
        close: Callable[[], Awaitable[Any]] | None = None,
    ):
        self.api = core_api
        self.namespace = namespace
        self.hub_id = hub_id
        self.name = configmap_name(hub_id)  # an InputError for a hub_id Kubernetes refuses
        self.log = logger or log
        self.request_timeout = request_timeout
        self.min_interval = min_interval
        self.max_backoff = max_backoff
        self._close = close
        self._pending: dict[str, Any] | None = None
        self._task: asyncio.Task | None = None
        self._exists: bool | None = None  # unknown until a load or a write tells
        self._keep: dict[str, str] = {}  # a rejected ConfigMap's data, carried along
        self._last_start = -float("inf")
        self._logged: set[str] = set()
        self._failing = 0
        self._closed = False
        #: counters (tests and logs): writes done, failed tries, most writes in flight
        self.writes = 0
        self.failures = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.last_saved: dict[str, Any] | None = None
        #: the last load failed (API error, timeout): what is saved is unknown, so no
        #: write may replace it until a load succeeds and ``on_late_load`` has taken it in
        self.unread = False
        #: ``(saved line, doc to write) -> doc to write``: set by :func:`attach`
        self.on_late_load: Callable[[LineDoc, dict[str, Any]], dict[str, Any]] | None = None

    @property
    def where(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"

    # ------------------------------------------------------------------------- load

    async def load(self) -> LineDoc:
        """The saved line, or an empty one (nothing saved, unreadable, API error: logged)."""
        try:
            status, body = await _call(
                self.api.read_namespaced_config_map,
                self.name,
                self.namespace,
                timeout=self.request_timeout,
            )
        except ApiFailure as e:
            self.unread = True
            self._log_once(
                "read " + e.kind, "cannot read the waiting line from %s: %s", self.where, e
            )
            return empty(self.hub_id)
        self.unread = status >= 400 and status != 404
        if status == 404:
            self._exists = False
            return empty(self.hub_id)
        if status >= 400:
            hint = " (the hub needs get on configmaps)" if status in (401, 403) else ""
            self._log_once(
                f"read {status}",
                "cannot read the waiting line from %s: the API server answered %s%s: %s",
                self.where,
                status,
                hint,
                _message(body),
            )
            return empty(self.hub_id)
        self._exists = True
        try:
            return parse_configmap(body, self.hub_id)
        except InputError as e:
            self._keep = rejected_data(body)
            self.log.error(
                "mig-spawner: the saved waiting line is unreadable, the hub goes on with an "
                "empty line (what was there is kept under %s when it next saves): %s",
                "line.rejected.json" if KEY in (body.get("data") or {}) else "its keys",
                e,
            )
            return empty(self.hub_id)

    # ------------------------------------------------------------------------- save

    def save(self, doc: dict[str, Any]) -> None:
        """Queue ``doc`` (the line's subscribe callback): the newest wins; never raises."""
        if self._closed:
            return
        self._pending = doc
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop: written by the next save on one
                return
            self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        backoff = 0.0
        while self._pending is not None and not self._closed:
            wait = max(self._last_start + self.min_interval - time.monotonic(), backoff)
            if wait > 0:
                await asyncio.sleep(wait)
            doc, self._pending = self._pending, None
            if doc is None:
                continue
            self._last_start = time.monotonic()
            if self.unread and self.on_late_load is not None:
                saved = await self.load()
                if self.unread:  # still unknown: never overwrite a line not read yet
                    self.failures += 1
                    self._failing += 1
                    if self._pending is None:
                        self._pending = doc
                    backoff = min(self.max_backoff, backoff * 2 or 0.5)
                    continue
                doc = self.on_late_load(saved, doc)
            if await self._write(doc):
                backoff = 0.0
            else:
                if self._pending is None:
                    self._pending = doc  # retry this one, unless a newer one came
                backoff = min(self.max_backoff, backoff * 2 or 0.5)

    async def _write(self, doc: dict[str, Any]) -> bool:
        """One create-or-replace. True when the cluster has ``doc``."""
        room = CONFIGMAP_MAX_BYTES - sum(len(k) + len(v.encode()) for k, v in self._keep.items())
        fitted = fit(doc, room - 64)
        if fitted is None:
            self._log_once(
                "save too big",
                "cannot save the waiting line in %s: its %d places do not fit in a ConfigMap "
                "(1 MiB); a restart would lose them",
                self.where,
                len(doc.get("places") or ()),
            )
            return True  # nothing to retry: the next change brings a new document
        if fitted[0] is not doc and "save trimmed" not in self._logged:
            self._logged.add("save trimmed")
            self.log.info(
                "mig-spawner: the waiting line's session history was trimmed to fit %s",
                self.where,
            )
        doc, text = fitted
        body = configmap_body(
            doc, hub=self.hub_id, namespace=self.namespace, keep=self._keep, text=text
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            status, answer = await self._create_or_replace(body)
        except ApiFailure as e:
            return self._failed(e.kind, str(e))
        finally:
            self.in_flight -= 1
        if status >= 400:
            hint = " (the hub needs create and update on configmaps)" if status == 403 else ""
            return self._failed(
                str(status), f"the API server answered {status}{hint}: " + _message(answer)
            )
        self.writes += 1
        self.last_saved = doc
        if self._failing:
            self.log.info(
                "mig-spawner: the waiting line is saved in %s again (after %d failed tries)",
                self.where,
                self._failing,
            )
            self._failing = 0
            self._logged = {k for k in self._logged if not k.startswith("save ")}
        return True

    async def _create_or_replace(self, body: dict[str, Any]) -> tuple[int, Any]:
        t = self.request_timeout
        if self._exists is not False:
            status, answer = await _call(
                self.api.replace_namespaced_config_map, self.name, self.namespace, body, timeout=t
            )
            if status != 404:
                self._exists = self._exists or status < 400
                return status, answer
        status, answer = await _call(
            self.api.create_namespaced_config_map, self.namespace, body, timeout=t
        )
        if status == 409:  # created meanwhile (another hub process, an admin): replace it
            self._exists = True
            return await _call(
                self.api.replace_namespaced_config_map, self.name, self.namespace, body, timeout=t
            )
        self._exists = status < 400
        return status, answer

    def _failed(self, kind: str, text: str) -> bool:
        self.failures += 1
        self._failing += 1
        self._log_once(
            "save " + kind, "cannot save the waiting line in %s (retrying): %s", self.where, text
        )
        return False

    def _log_once(self, kind: str, message: str, *args: Any) -> None:
        if kind in self._logged:
            self.log.debug("mig-spawner: " + message, *args)
            return
        self._logged.add(kind)
        self.log.warning("mig-spawner: " + message, *args)

    # ------------------------------------------------------------------------- lifecycle

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is left to write (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while self._task is not None and not self._task.done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.wait({self._task}, timeout=left)
        return self._pending is None

    async def close(self, timeout: float = 5.0) -> None:
        """Write what is pending (up to ``timeout``), then stop; later saves are dropped."""
        await self.flush(timeout)
        self._closed = True
        if self._task is not None and not self._task.done():
            await cancel_and_wait(self._task)
        if self._close is not None:
            await self._close()


def hub_namespace(spawner: Any) -> str:
    """The hub's own namespace, where its line's ConfigMap is: the spawner's, unless each
    user has a namespace (``enable_user_namespaces``); then the one the hub runs in."""
    if getattr(spawner, "enable_user_namespaces", False):
        return spawner._namespace_default()
    return spawner.namespace


def settings_of(spawner: Any) -> dict[str, Any]:
    """:func:`attach`'s keyword arguments for ``spawner``'s hub (its own API client)."""
    from kubernetes_asyncio.client import ApiClient, CoreV1Api

    client = ApiClient(configuration=spawner._api_configuration())
    return {
        "core_api": CoreV1Api(client),
        "close": client.close,
        "namespace": hub_namespace(spawner),
        "hub_id": spawner.hub_id,
        "grace": spawner.line_restart_grace,
        "logger": spawner.log,
        "request_timeout": spawner.k8s_api_request_timeout,
    }


async def attach(
    line: Any,
    *,
    core_api: Any,
    namespace: str,
    hub_id: str,
    grace: float = 600.0,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
    close: Callable[[], Awaitable[Any]] | None = None,
    load_timeout: float = 10.0,
    now: Callable[[], float] = time.time,
    **store_options: Any,
) -> LineStore | None:
    """Load the saved line into ``line`` (``kept``, ``history``) and save every change.

    ``line``: the hub's line object (``subscribe(callback)``, ``kept``, ``history``). Call
    it once, when the line is created, before the first place joins: ``await
    attach(line, **settings_of(spawner))``. Never raises; None when the store cannot
    exist (a ``hub_id`` that makes no ConfigMap name: logged), the line then unsaved.
    """
    logger = logger or log
    try:
        store = LineStore(
            core_api,
            namespace=namespace,
            hub_id=hub_id,
            logger=logger,
            close=close,
            **store_options,
        )
    except InputError as e:
        logger.error("mig-spawner: the waiting line will not be saved: %s", e)
        if close is not None:
            await close()
        return None
    try:
        doc = await asyncio.wait_for(store.load(), load_timeout)
    except asyncio.TimeoutError:
        logger.warning(
            "mig-spawner: reading the waiting line from %s took over %g s; going on without it",
            store.where,
            load_timeout,
        )
        store.unread = True
        doc = empty(hub_id)

    def take_in(saved: LineDoc) -> None:
        kept = kept_places(saved, now(), grace)
        for key, place in kept.items():
            line.kept.setdefault(key, place)
        for tier, lengths in saved.history.items():
            # the saved lengths are older than any the line gathered since it started
            line.history[tier] = [*lengths, *line.history.get(tier, [])][-HISTORY_LIMIT:]
        if saved.places or saved.history:
            logger.info(
                "mig-spawner: waiting line read from %s: %d place(s) kept for %g s, "
                "session history for %d tier(s)",
                store.where,
                len(kept),
                grace,
                len(saved.history),
            )

    def late(saved: LineDoc, outgoing: dict[str, Any]) -> dict[str, Any]:
        """The first read succeeded only after changes: take it in now, and write the
        outgoing document with the saved history (it was made without it)."""
        take_in(saved)
        return {**outgoing, "history": {t: list(v) for t, v in line.history.items()}}

    take_in(doc)
    store.on_late_load = late
    line.subscribe(store.save)
    return store


# --------------------------------------------------------------------------- readers


async def read_line(
    core_api: Any, *, namespace: str, hub_id: str, timeout: float = 5.0
) -> tuple[LineDoc | None, str]:
    """(the saved line, "") or (None, why it cannot be shown), for the other processes
    (the service, the CLI). Nothing saved yet is an empty line."""
    try:
        name = configmap_name(hub_id)
    except InputError as e:
        return None, str(e)
    where = f"ConfigMap {namespace}/{name}"
    try:
        status, body = await _call(
            core_api.read_namespaced_config_map, name, namespace, timeout=timeout
        )
    except ApiFailure as e:
        return None, f"cannot read the waiting line from {where}: {e}"
    if status == 404:
        return empty(hub_id), ""
    if status >= 400:
        hint = " (needs get on configmaps)" if status in (401, 403) else ""
        return None, f"reading {where}: the API server answered {status}{hint}"
    try:
        return parse_configmap(body, hub_id), ""
    except InputError as e:
        return None, f"the saved waiting line is unreadable: {e}"


__all__ = [
    "LINE_API_CALLS",
    "LineStore",
    "attach",
    "read_line",
    "restart_grace_trait",
    "settings_of",
]
