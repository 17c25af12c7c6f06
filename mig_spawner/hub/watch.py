"""The hub-wide view of the cluster: list+watch of Nodes and Pods into one ClusterState.

One :class:`ClusterView` per hub process (per API server), shared by every spawner. It
lists, then watches from the list's resourceVersion, applying each event to the pure
:class:`~mig_spawner.core.cluster.ClusterState`. A dropped watch resumes from the last
resourceVersion; a 410 Gone or any error relists. Repeated API failure is logged with
backoff and surfaced as "availability unknown" -- it never exits the hub (KubeSpawner's
``ResourceReflector`` does ``sys.exit`` on repeated failure, and keys objects by
namespace, so it cannot hold Nodes as they are).

Objects stay plain dicts, exactly as the API returns them: the watch is asked for the
``object`` return type, so kubernetes_asyncio does not build models we would only have
to serialize back.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.watch import Watch
from traitlets import Bool

from ..core.catalog import default_catalog
from ..core.cluster import ClusterState
from ..core.dra import DRA_API_CALLS
from ..core.pods import Trust
from .tasks import cancel_and_wait

#: Every Kubernetes API call mig-spawner adds to KubeSpawner's: (api group, resource, verb).
#: The ClusterRole in helm-values/rbac grants exactly these; tests hold both to this list.
CLUSTER_API_CALLS: tuple[tuple[str, str, str], ...] = (
    ("", "nodes", "list"),
    ("", "nodes", "watch"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    *DRA_API_CALLS,  # backend = "dra" only (hub/dra.py)
)

log = logging.getLogger("mig_spawner.hub.watch")


def view_key(host: str) -> tuple:
    """One view per event loop and API server (tests run several hubs in one process)."""
    return (asyncio.get_running_loop(), host)


def gc_freeze_trait() -> Bool:
    """``MIGSpawner.gc_freeze_after_list`` (defined here to keep the spawner's module small)."""
    return Bool(
        True,
        config=True,
        help="""
        Call Python's ``gc.freeze()`` once, after the hub's first successful list of
        pods: every object alive then (the hub's imports, the cluster state, KubeSpawner's
        reflector copy of the pods) moves to a permanent generation that the cyclic
        garbage collector no longer walks. Why: in a large cluster the generation-2
        collections walking that heap are the hub loop's longest stalls (about 1.9 s CPU
        at 5,000 nodes and 50,000 pods, benchmarks/gcpause.py); freezing cuts the longest
        about 3x. Cost: frozen objects are still freed by reference counting when dropped,
        only a frozen object caught in a reference cycle is never collected (a small leak
        of whatever the first list left in cycles). It changes the whole hub process, not
        only mig-spawner. Relists do not freeze again.
        """,
    )


class _Feed:
    """List+watch of one resource kind into the state, forever, with resync and backoff."""

    def __init__(self, view: ClusterView, kind: str, list_call: Callable[..., Awaitable[Any]]):
        self.view = view
        self.kind = kind
        self.list_call = list_call
        self.synced = asyncio.Event()
        self.failures = 0
        self.last_error = ""
        self.relists = 0
        #: time.monotonic() of the last list or watch event (bookmarks too); None: never
        self.last_event_at: float | None = None

    @property
    def apply(self):
        state, dra = self.view.state, self.view.dra
        if dra is not None and self.kind != "nodes":  # DRA: objects reshaped (hub/dra.py)
            return dra.applier(self.kind)
        return self.view.apply_node_event if self.kind == "nodes" else state.apply_pod_event

    @property
    def replace(self):
        state, dra = self.view.state, self.view.dra
        if dra is not None:
            return dra.replacer(self.kind)
        return state.replace_nodes if self.kind == "nodes" else state.replace_pods

    async def run(self) -> None:
        while True:
            try:
                version = await self._list()
                await self._watch(version)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the API is down, forbidden, garbled...: retry, never exit
                self._failed(e)
                await asyncio.sleep(self._backoff())

    async def _list(self) -> str:
        response = await self.list_call(
            _preload_content=False, _request_timeout=self.view.request_timeout
        )
        if response.status >= 400:  # raw responses do not raise by themselves
            text = await response.text()
            raise ApiException(status=response.status, reason=text[:200])
        body = await response.json()
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ValueError(f"listing {self.kind} returned no items list")
        for problem in self.replace(items):  # unparseable objects (garbled nodes: below)
            self.view.log.warning(
                "Ignoring a malformed object while listing %s: %s", self.kind, problem
            )
        if self.kind == "nodes":
            for node in list(self.view.state.nodes.values()):
                self.view.report_node(node.name, node.problems)
        self.relists += 1
        self.last_event_at = time.monotonic()
        self._healthy()
        self.view.touched(self.kind, None)  # a relist may have changed anything
        if self.kind == "pods" and self.relists == 1 and self.view.freeze_gc:
            gc.freeze()  # the hub's imports and the first list: never walked again
            self.view.log.info(
                "gc.freeze() after the first list of pods: %d objects frozen",
                gc.get_freeze_count(),
            )
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, version: str) -> None:
        """Follow events from ``version`` until the stream breaks; then the caller relists.

        A watch that ends normally (server-side timeout) is resumed from the last
        resourceVersion seen, without a relist.
        """
        while True:
            watch = Watch(return_type="object")
            kwargs: dict[str, Any] = {
                "timeout_seconds": self.view.watch_timeout,
                "_request_timeout": self.view.watch_timeout + 10,
                "allow_watch_bookmarks": True,
            }
            if version:
                kwargs["resource_version"] = version
            async with watch.stream(self.list_call, **kwargs) as stream:
                async for event in stream:
                    version = watch.resource_version or version
                    self.last_event_at = time.monotonic()
                    kind = event.get("type")
                    if kind == "BOOKMARK":
                        continue
                    try:
                        self.apply(kind, event.get("raw_object"))
                    except ValueError as e:
                        self.view.log.warning(
                            "Ignoring a malformed %s watch event: %s", self.kind, e
                        )
                    else:
                        self.view.touched(self.kind, event.get("raw_object"))
            self._healthy()

    def _healthy(self) -> None:
        if self.failures:
            self.view.log.info(
                "Watch of %s recovered after %d failure(s)", self.kind, self.failures
            )
        self.failures = 0
        self.last_error = ""
        self.synced.set()

    def _failed(self, e: Exception) -> None:
        self.failures += 1
        if isinstance(e, ApiException):
            self.last_error = f"Kubernetes API answered {e.status} {e.reason} for {self.kind}"
        else:
            self.last_error = f"cannot follow {self.kind}: {type(e).__name__}: {e}"
        level = logging.ERROR if self.failures >= 3 else logging.WARNING
        self.view.log.log(level, "%s (failure %d; retrying)", self.last_error, self.failures)
        if self.failures >= self.view.unhealthy_after:
            self.synced.clear()  # availability is unknown until a relist succeeds

    def _backoff(self) -> float:
        return min(self.view.max_backoff, 0.2 * 2 ** min(self.failures, 10))


class ClusterView:
    """The shared state plus the two feeds that keep it current."""

    def __init__(
        self,
        core_api: Any,
        *,
        request_timeout: float = 10,
        watch_timeout: int = 300,
        max_backoff: float = 30,
        unhealthy_after: int = 2,
        trust: Trust | None = None,
        close: Callable[[], Awaitable[Any]] | None = None,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        freeze_gc: bool = False,
        dra: Callable[[ClusterState], Any] | None = None,
    ):
        #: the hub's own log (MIGSpawner passes it): a plain module logger has no
        #: handler in a hub process, so its INFO lines would be lost
        self.log = logger or log
        self.state = ClusterState(trust, default_catalog())
        self._close = close
        #: node -> the problems last logged for it: each change is logged once
        self._node_problems: dict[str, tuple[str, ...]] = {}
        self.request_timeout = request_timeout
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.unhealthy_after = unhealthy_after
        self.started_at = time.monotonic()
        #: gc.freeze() once after the first successful pods list (gc_freeze_after_list)
        self.freeze_gc = freeze_gc
        self._feeds = [
            _Feed(self, "nodes", core_api.list_node),
            _Feed(self, "pods", core_api.list_pod_for_all_namespaces),
        ]
        #: backend = "dra": ResourceSlices and ResourceClaims feed the state too (hub/dra.py)
        self.dra = dra(self.state) if dra is not None else None
        if self.dra is not None:
            self._feeds += [_Feed(self, kind, call) for kind, call in self.dra.feeds()]
        self._tasks: list[asyncio.Task] = []
        #: pod key -> the event a starting spawn waits on (hub/placing.py)
        self._placement_waiters: dict[str, asyncio.Event] = {}
        #: called as ``listener(kind, obj)`` after every applied watch event (obj None: a
        #: relist): the waiting line passes again when room may have freed
        self._listeners: list[Callable[[str, Any], None]] = []
        #: the hub's waiting line on this view (hub/waiting.py makes it on first use)
        self.waiting_line: Any = None
        #: the hub's reclaim of idle servers on this view (hub/reclaim.py)
        self.reclaimer: Any = None

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(feed.run(), loop=None) for feed in self._feeds]

    async def stop(self) -> None:
        if self.reclaimer is not None:
            await self.reclaimer.close()
        if self.waiting_line is not None:
            await self.waiting_line.close()  # its last change is saved first
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await cancel_and_wait(task)  # a watch's read may drop one cancel (hub/tasks.py)
        self._tasks = []
        if self._close is not None:
            close, self._close = self._close, None
            await close()

    def apply_node_event(self, event_type: str, obj: Any):
        apply = self.dra.apply_node_event if self.dra is not None else self.state.apply_node_event
        node = apply(event_type, obj)
        name = node.name if node is not None else (obj.get("metadata") or {}).get("name")
        self.report_node(name, node.problems if node is not None else ())
        return node

    # ------------------------------------------------------------ starting spawns

    def wake_on_change(self, key: str, event: asyncio.Event | None) -> None:
        """Set ``event`` when a watch event touches pod ``key`` or the node it is pinned
        or reserved on (or a relist happens); None stops it."""
        if event is None:
            self._placement_waiters.pop(key, None)
        else:
            self._placement_waiters[key] = event

    def add_listener(self, listener: Callable[[str, Any], None]) -> None:
        """Call ``listener(kind, obj)`` after every applied watch event or relist."""
        self._listeners.append(listener)

    def touched(self, kind: str, obj: Any) -> None:
        """A watch event (``obj`` None: a relist) was applied: wake the spawns it concerns."""
        for listener in self._listeners:
            try:
                listener(kind, obj)
            except Exception:  # a listener's bug must not stop the watch
                self.log.exception("A cluster view listener failed")
        waiters = self._placement_waiters
        if not waiters:
            return
        meta = (obj.get("metadata") or {}) if isinstance(obj, dict) else None
        if meta is None:  # a relist
            for event in waiters.values():
                event.set()
        elif kind == "pods":
            event = waiters.get(f"{meta.get('namespace')}/{meta.get('name')}")
            if event is not None:
                event.set()
        elif kind == "resourceclaims" and self.dra is not None:  # its pods' spawns
            for key in self.dra.users.get(f"{meta.get('namespace')}/{meta.get('name')}", ()):
                if key in waiters:
                    waiters[key].set()
        elif kind != "nodes":
            return
        else:
            name, state = meta.get("name"), self.state
            for key, event in waiters.items():
                pod, res = state.pods.get(key), state.reservations.get(key)
                if (
                    key in state.displaced
                    or (pod is not None and pod.pinned == name)
                    or (res is not None and res.node == name)
                ):
                    event.set()

    def report_node(self, name: str, problems: tuple[str, ...]) -> None:
        """Log a node's problems (its GPUs are not offered) once per change, not per event."""
        if self._node_problems.get(name, ()) == problems:
            return
        if problems:
            self._node_problems[name] = problems
            self.log.warning("Node %s: %s", name, "; ".join(p[:200] for p in problems))
        else:
            self._node_problems.pop(name, None)
            self.log.info("Node %s: problems resolved", name)

    @property
    def known(self) -> bool:
        """True while both feeds are synced: decisions can trust the state."""
        return all(feed.synced.is_set() for feed in self._feeds)

    @property
    def problem(self) -> str:
        return "; ".join(f.last_error for f in self._feeds if f.last_error)

    async def wait_known(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for both feeds to be synced."""
        if self.known:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*(f.synced.wait() for f in self._feeds)), timeout)
        except asyncio.TimeoutError:
            return False
        return self.known

    def seconds_since_last_event(self) -> dict[str, float | None]:
        """Per resource ("nodes", "pods"): seconds since its last list or watch event."""
        now = time.monotonic()
        return {
            f.kind: None if f.last_event_at is None else now - f.last_event_at for f in self._feeds
        }

    def stats(self) -> dict[str, Any]:
        return {
            "nodes": len(self.state.nodes),
            "gpu_pods": len(self.state.pods),
            "reservations": len(self.state.reservations),
            "relists": {f.kind: f.relists for f in self._feeds},
            "failures": {f.kind: f.failures for f in self._feeds},
        }
