"""Kueue mode in the hub: the setting, the watch of Kueue's objects, the pod's queue label,
the progress while Kueue holds the pod, and its ``max_wait`` (core: :mod:`..core.kueue`).

A mixin of :class:`~mig_spawner.hub.spawner.MIGSpawner`, first in its bases: it wraps the
placement's ``_start`` and ``progress`` and adds the queue labels to the pinned pod.

- The hub's :class:`~.watch.ClusterView` also list+watches ClusterQueues (cluster-scoped),
  LocalQueues and Workloads (the pods' namespace) through ``CustomObjectsApi``; they feed
  ``ClusterState.kueue``, which the decision reads (the ClusterQueue's room per slice).
  Kueue not installed (the list answers 404): one error line, and the decisions leave
  quota to Kueue (none will hold the pods: nothing gates them).
- The pod carries ``kueue.x-k8s.io/queue-name`` (and ``kueue.x-k8s.io/priority-class``);
  Kueue's pod webhook gates it (``kueue.x-k8s.io/admission``) until its Workload is
  admitted. While gated, the progress shows its place from the visibility API
  (``pendingworkloads`` of the LocalQueue, polled every few seconds) and the Workload's
  own reason. JupyterHub's ``start_timeout`` covers the whole start, so a Kueue start
  gets its tier's ``max_wait`` on top (set before JupyterHub reads it), and the hub
  enforces ``max_wait`` itself: gated longer, the pod is deleted and the start refused.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from kubespawner import KubeSpawner
from traitlets import Dict
from traitlets.config import Configurable

from ..core import kueue as core
from ..core import messages
from ..core.policy import ConfigError
from .tasks import cancel_and_wait
from .watch import _Feed

#: The API calls Kueue mode adds (api group, resource, verb); the ClusterRole grants them.
KUEUE_API_CALLS: tuple[tuple[str, str, str], ...] = (
    (core.GROUP, "clusterqueues", "list"),
    (core.GROUP, "clusterqueues", "watch"),
    (core.GROUP, "localqueues", "list"),
    (core.GROUP, "localqueues", "watch"),
    (core.GROUP, "workloads", "list"),
    (core.GROUP, "workloads", "watch"),
    (core.VISIBILITY_GROUP, "localqueues/pendingworkloads", "get"),
)
NOT_INSTALLED = f"Kueue is not installed ({core.GROUP}/{core.VERSION} ClusterQueues not served)"
#: seconds between two reads of a gated pod's position (the visibility API)
POSITION_EVERY = 3.0
#: seconds after its pod is created in which Kueue must gate it or make its Workload
INTEGRATION_GRACE = 3.0


class KueueMixin(Configurable):
    kueue = Dict(
        config=True,
        help="""
        Kueue mode (empty, the default: off, mig-spawner's own quotas). With it, Kueue
        (kueue.x-k8s.io/v1beta2, its plain-Pod integration enabled for the pods'
        namespace) admits GPU notebooks by quota, beside the cluster's batch jobs::

            c.MIGSpawner.kueue = {
                "local_queues": {"vision": "team-vision", "nlp": "team-nlp"},
                "default_local_queue": "notebooks",   # users in no team (optional)
                "priority_class": "notebooks",        # a WorkloadPriorityClass (optional)
            }

        - ``local_queues``: team (JupyterHub group) -> LocalQueue in the spawner's
          ``namespace``. These are the teams: a user picks among theirs as with quotas.
        - ``default_local_queue``: the LocalQueue of users in no team; without it their
          GPU spawns are refused with a message saying so.
        - ``priority_class``: the notebooks' WorkloadPriorityClass (the pod label
          ``kueue.x-k8s.io/priority-class``), e.g. to keep batch from preempting them.

        mig-spawner still chooses the slice from live capacity and the tier's chain, and
        skips a slice for which the team's ClusterQueue has no quota left (counting what
        it may borrow in its cohort), saying so; when no slice has quota left, the
        preferred one is requested and the pod waits in Kueue's queue, its position and
        Kueue's reason in the progress, for up to the tier's ``max_wait`` (added to
        ``start_timeout``). ``team_quotas`` and ``default_quota`` are refused beside it:
        the ClusterQueues hold the quota. The hub's RBAC needs list/watch on Kueue's
        clusterqueues, localqueues and workloads and get on the visibility API's
        ``localqueues/pendingworkloads`` (helm-values/rbac). See "Kueue mode" in the
        concepts.
        """,
    )

    #: the admin's start_timeout, before a Kueue start added its tier's max_wait
    _admin_start_timeout: float | None = None
    #: this start's Kueue notes: what the progress has said (the last line), the poll
    _kueue_said: str = ""
    #: (in the LocalQueue, in the ClusterQueue), 1-based; the progress shows the latter:
    #: the line notebooks and batch share
    _kueue_position: tuple[int, int] | None = None
    _kueue_position_at: float = 0.0
    _kueue_visibility_warned: bool = False
    _kueue_refusal: str = ""
    _kueue_seen_gated: bool = False
    _kueue_note: str = ""

    def _kueue_settings(self) -> core.KueueSettings | None:
        if not self.tiers or not self.kueue:
            return None
        try:
            return self.policy.kueue
        except ConfigError:
            return None  # load_user_options refuses, naming the setting

    # ---------------------------------------------------------------- the pod

    def _place_on(self, node_name: str, view) -> None:
        super()._place_on(node_name, view)
        settings = self._kueue_settings()
        decision = self.claim.decision if self.claim is not None else None
        if settings is not None and decision is not None:
            self.extra_labels = {**self.extra_labels, **settings.labels(decision.team)}

    def set_start_timeout(self) -> None:
        """Before JupyterHub reads it: the admin's ``start_timeout``, plus the tier's
        ``max_wait`` for a GPU start in Kueue mode (Kueue may hold its pod that long)."""
        if self._admin_start_timeout is None:
            self._admin_start_timeout = self.start_timeout
        timeout = self._admin_start_timeout
        decision = self.claim.decision if self.claim is not None else None
        if self._kueue_settings() is not None and decision is not None and decision.admitted:
            tier = self.policy.tier(decision.tier)
            timeout += tier.max_wait if tier is not None else 0
        self.start_timeout = timeout

    async def get_pod_manifest(self):
        """Refuse, before any pod exists, a GPU start Kueue cannot take: Kueue is not
        installed, or the team's LocalQueue does not exist."""
        settings = self._kueue_settings()
        claim = self.claim
        decision = claim.decision if claim is not None else None
        if settings is not None and claim is not None and claim.gpu and decision is not None:
            problem = self._kueue_problem(settings, decision.team)
            if problem:
                self.log.error("%s: %s", self._log_name, problem)
                raise self._refused(
                    f"{problem}; please tell {messages.ADMIN}.", reason="kueue", status=503
                )
        return await super().get_pod_manifest()

    def _kueue_problem(self, settings: core.KueueSettings, team: str | None) -> str:
        view = self._current_view()
        if view is None:
            return ""
        if kueue_problem(view) == NOT_INSTALLED:
            return f"{NOT_INSTALLED}: GPU servers cannot start while MIGSpawner.kueue is set"
        queue = settings.queue_for(team)
        if queue is not None and view.state.kueue.has_local_queue(self.namespace, queue) is False:
            return (
                f"Kueue's LocalQueue {queue} (MIGSpawner.kueue) does not exist in namespace"
                f" {self.namespace}"
            )
        return ""

    # ---------------------------------------------------------------- the start

    async def _start(self):
        settings = self._kueue_settings()
        if settings is None:
            return await super()._start()
        self._kueue_said, self._kueue_refusal, self._kueue_seen_gated = "", "", False
        self._kueue_note = ""
        self._kueue_position, self._kueue_position_at = None, 0.0
        task = asyncio.ensure_future(super()._start())
        guard = asyncio.ensure_future(self._kueue_guard(task, settings))
        try:
            result = await task
            await self._kueue_settle()
            return result
        except asyncio.CancelledError:
            if not self._kueue_refusal:
                raise
        finally:
            await cancel_and_wait(guard)
        await self._delete_pod_of_kueue()
        raise self._refused(self._kueue_refusal, reason="kueue", status=503)

    async def _kueue_guard(self, task: asyncio.Future, settings: core.KueueSettings) -> None:
        """While the start runs: when Kueue held its pod longer than the tier's
        ``max_wait``, end the start (``_start`` deletes the pod and refuses)."""
        gated_since: float | None = None
        while not task.done():
            await asyncio.sleep(0.5)
            claim = self.claim
            decision = claim.decision if claim is not None else None
            if decision is None or not decision.admitted or claim.ended:
                continue
            view = self._current_view()
            if view is None:
                continue
            if not self._kueue_gated():
                gated_since = None
                continue
            self._kueue_seen_gated = True
            now = time.monotonic()
            gated_since = gated_since or now
            tier = self.policy.tier(decision.tier)
            max_wait = tier.max_wait if tier is not None else 0
            if max_wait > 0 and now - gated_since > max_wait:
                where = self._kueue_position[1] if self._kueue_position else None
                self._kueue_refusal = "Kueue did not admit it: " + messages.line_timeout(
                    now - gated_since, where, decision.granted
                )
                self.log.info("%s: %s", self._log_name, self._kueue_refusal)
                await cancel_and_wait(task)
                return

    async def _kueue_settle(self) -> None:
        """The server runs: if Kueue never held its pod, wait a moment for its Workload;
        none (no gate, no Workload: the pod integration is off), the progress says so
        before the server is ready, and the log once."""
        claim = self.claim
        labels = ((self._kueue_pod() or {}).get("metadata") or {}).get("labels") or {}
        if claim is None or not claim.gpu or core.QUEUE_LABEL not in labels:
            return  # a CPU profile: not Kueue's
        deadline = time.monotonic() + INTEGRATION_GRACE
        while not self._kueue_seen_gated and time.monotonic() < deadline:
            pod, view = self._kueue_pod(), self._current_view()
            uid = ((pod or {}).get("metadata") or {}).get("uid") or ""
            if view is None or view.state.kueue.workload_of_pod(uid) is not None:
                return
            await asyncio.sleep(0.1)
        if self._kueue_seen_gated:
            return
        self._kueue_note = (
            f"Kueue did not take this pod (no {core.GATE} gate, no Workload): its pod"
            f" integration is not enabled for namespace {self.namespace}; it starts"
            " without Kueue's quota."
        )
        self.log.warning("%s: %s", self._log_name, self._kueue_note)
        for _ in range(20):  # the progress says it before the server is ready
            if self._kueue_said == self._kueue_note:
                break
            await asyncio.sleep(0.1)

    async def _delete_pod_of_kueue(self) -> None:
        try:
            await KubeSpawner.stop(self, now=True)
        except Exception as e:
            self.log.warning("%s: deleting the pod Kueue held failed: %s", self._log_name, e)

    def _kueue_pod(self) -> dict[str, Any] | None:
        reflector = self.pod_reflector
        pod = reflector.pods.get(self.pod_key) if reflector is not None else None
        return pod if isinstance(pod, dict) else None

    def _kueue_gated(self) -> bool:
        pod = self._kueue_pod()
        gates = ((pod or {}).get("spec") or {}).get("schedulingGates") or []
        return any(isinstance(g, dict) and g.get("name") == core.GATE for g in gates)

    # ---------------------------------------------------------------- the progress

    async def progress(self):
        settings = self._kueue_settings()
        events = super().progress()
        if settings is None:
            async for event in events:
                yield event
            return
        queue: asyncio.Queue = asyncio.Queue()

        async def pump():
            try:
                async for event in events:
                    await queue.put(event)
            finally:
                await queue.put(None)

        pumping = asyncio.ensure_future(pump())
        last = 0
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), 0.2)
                except asyncio.TimeoutError:
                    event = {}
                if event is None:
                    return
                if event:
                    last = event.get("progress", last)
                    yield event
                line = await self._kueue_line(settings)
                if line and line != self._kueue_said:
                    self._kueue_said = line
                    yield {"progress": last, "message": line}
        finally:
            await cancel_and_wait(pumping)

    async def _kueue_line(self, settings: core.KueueSettings) -> str:
        """What Kueue does with this start's pod, in one line ("" when nothing to say)."""
        claim = self.claim
        decision = claim.decision if claim is not None else None
        pod = self._kueue_pod()
        view = self._current_view()
        if decision is None or not decision.admitted or pod is None or view is None:
            return ""
        queue = settings.queue_for(decision.team)
        meta = pod.get("metadata") or {}
        if queue is None or (meta.get("labels") or {}).get(core.QUEUE_LABEL) != queue:
            return ""
        objects = view.state.kueue
        workload = objects.workload_of_pod(meta.get("uid") or "")
        cq = objects.cluster_queue_of(self.namespace, queue)
        if self._kueue_gated():
            self._kueue_seen_gated = True
            tier = self.policy.tier(decision.tier)
            reason = workload.message if workload is not None else ""
            if workload is not None:
                await self._poll_position(queue, workload.name)
            place = self._kueue_position[1] if self._kueue_position else None
            return messages.kueue_in_line(place, tier, cq, reason)
        if self._kueue_note:
            return self._kueue_note
        if workload is not None and workload.phase == core.ADMITTED:
            return f"Admitted by Kueue (ClusterQueue {workload.cluster_queue or cq})."
        return ""

    async def _poll_position(self, queue: str, workload: str) -> None:
        now = time.monotonic()
        if now - self._kueue_position_at < POSITION_EVERY:
            return
        self._kueue_position_at = now
        try:
            answer = await pending_workloads(self.api.api_client, self.namespace, queue)
        except Exception as e:  # the visibility API is optional: the reason without a place
            self._kueue_position = None
            if not self._kueue_visibility_warned:
                self._kueue_visibility_warned = True
                self.log.warning(
                    "Kueue's visibility API (%s) is unavailable, no positions shown: %s",
                    core.VISIBILITY_GROUP,
                    _why(e),
                )
            return
        self._kueue_position = core.position(answer, workload)


async def pending_workloads(api_client: Any, namespace: str, queue: str) -> Any:
    """``GET .../namespaces/{ns}/localqueues/{lq}/pendingworkloads`` (a plain dict)."""
    path = (
        f"/apis/{core.VISIBILITY_GROUP}/{core.VERSION}/namespaces/{namespace}"
        f"/localqueues/{queue}/pendingworkloads"
    )
    response = await api_client.call_api(
        path,
        "GET",
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
        _preload_content=False,
        _request_timeout=10,
    )
    if response.status >= 400:
        text = await response.text()
        raise ApiException(status=response.status, reason=text[:200])
    return await response.json()


def _why(e: Exception) -> str:
    if isinstance(e, ApiException):
        return f"{e.status} {str(e.reason or '')[:200]}"
    return f"{type(e).__name__}: {e}"


# ---------------------------------------------------------------------- the watch


class KueueFeed(_Feed):
    """List+watch of one of Kueue's kinds into ``state.kueue``. Kueue not installed or
    not readable: one line per change of problem, retried with backoff, never fatal."""

    @property
    def apply(self):
        return functools.partial(self.view.state.apply_kueue_event, self.kind)

    @property
    def replace(self):
        def replace(items):
            self.view.state.replace_kueue(self.kind, items)
            return []

        return replace

    def _failed(self, e: Exception) -> None:
        if not (isinstance(e, ApiException) and e.status == 404):
            return super()._failed(e)  # a passing trouble: the watch's own words and backoff
        self.failures += 1
        problem = NOT_INSTALLED if self.kind == "clusterqueues" else f"{self.kind} not served"
        if problem != self.last_error and self.kind == "clusterqueues":
            self.view.log.error("%s (retrying)", problem)  # one line, not one per retry
        self.last_error = problem


def start_feeds(spawner, view, client) -> None:
    """Kueue mode: follow Kueue's objects on ``view`` too (once per view)."""
    if not spawner.tiers or not spawner.kueue or getattr(view, "kueue_feeds", None):
        return
    api = CustomObjectsApi(client)
    namespace = spawner.namespace
    view.state.kueue_namespace = namespace
    calls = {
        "clusterqueues": functools.partial(
            api.list_cluster_custom_object, core.GROUP, core.VERSION, "clusterqueues"
        ),
        "localqueues": functools.partial(
            api.list_namespaced_custom_object, core.GROUP, core.VERSION, namespace, "localqueues"
        ),
        "workloads": functools.partial(
            api.list_namespaced_custom_object, core.GROUP, core.VERSION, namespace, "workloads"
        ),
    }
    view.kueue_feeds = [KueueFeed(view, kind, call) for kind, call in calls.items()]
    view.add_listener(EvictionReport(view, spawner.log))
    view._tasks += [asyncio.ensure_future(feed.run()) for feed in view.kueue_feeds]


class EvictionReport:
    """A Workload of one of the hub's pods evicted or preempted by Kueue (Kueue then stops
    the pod; JupyterHub's poll sees the server stopped): one line in the hub's log, and a
    notice on the user's home page (the reclaim notices' channel, ``mig_reclaim``),
    read at their next start."""

    def __init__(self, view, logger) -> None:
        self.view = view
        self.log = logger
        self.told: set[tuple[str, str]] = set()  # (workload, its condition's reason)

    def __call__(self, kind: str, obj: Any) -> None:
        if kind != "workloads" or obj is None:
            return
        workload = core.parse_workload(obj)
        if workload is None or not workload.stopped_by_kueue:
            return
        told = (f"{workload.namespace}/{workload.name}", workload.reason)
        if told in self.told:
            return
        pod = next(
            (p for p in self.view.state.pods.values() if p.uid and p.uid in workload.pod_uids),
            None,
        )
        if pod is None or pod.user is None:
            return  # not a server of this hub's
        self.told.add(told)
        what = "preempted" if workload.phase == core.PREEMPTED else "evicted"
        server = f"{pod.user}/{pod.server_name}" if pod.server_name else pod.user
        why = f"{workload.reason}: {workload.message}" if workload.message else workload.reason
        self.log.warning("Kueue %s the server %s (%s): %s", what, server, pod.key, why)
        reclaimer = self.view.reclaimer
        if reclaimer is not None:
            name = f"'{pod.server_name}'" if pod.server_name else "Your server"
            notices = reclaimer.notices.setdefault(pod.user, [])
            notices.append(f"{name} was stopped: Kueue {what} it ({why}).")
            del notices[:-5]


async def wait_synced(view, timeout: float) -> bool:
    """Wait up to ``timeout`` for Kueue's objects to be listed (False: not known, at once
    when Kueue is not installed: the decision then leaves quota to Kueue)."""
    feeds = getattr(view, "kueue_feeds", None) or []
    deadline = time.monotonic() + timeout
    while not all(f.synced.is_set() for f in feeds):
        if kueue_problem(view) == NOT_INSTALLED or time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def kueue_problem(view) -> str:
    """Why Kueue's objects are not known ("" when they are, or not yet listed)."""
    feeds = getattr(view, "kueue_feeds", None) or []
    return next((f.last_error for f in feeds if f.last_error and not f.synced.is_set()), "")
