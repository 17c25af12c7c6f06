"""A start's pod create, and a stop that meets a start in flight.

A mixin of :class:`~mig_spawner.hub.spawner.MIGSpawner`, beside
:class:`~mig_spawner.hub.placing.PlacementMixin` (which runs each attempt of a start).
Two stops reach a start while it runs:

- KubeSpawner's answer to a 409 on creating the pod: ``stop(True)``, then the create
  again. The pod is replaced; the claim and its slice stay (:func:`replacing_pod`).
- JupyterHub's DELETE of a pending spawn, or its ``start_timeout``: the start ends first,
  a create request already sent is waited for, and a pod it made is deleted, before the
  claim lets the slice go (:meth:`StartStopMixin._end_start`).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid

from jupyterhub.utils import maybe_future
from kubespawner import KubeSpawner

from . import dra
from .tasks import cancel_and_wait

#: True while KubeSpawner's create request for this start's pod runs (in its own task)
_CREATING_POD = contextvars.ContextVar("mig_spawner_creating_pod", default=False)


def replacing_pod() -> bool:
    """Whether ``stop()`` is KubeSpawner replacing a pod in the way of this start's own
    create (its answer to a 409), rather than the server stopping."""
    return _CREATING_POD.get()


#: the annotation that tells this start's own pod from another of its name
ATTEMPT_ANNOTATION = "mig-spawner/attempt"


class _OwnPodInTheWay(Exception):
    """The pod a create met (409) is the one this attempt asked for."""


class StartStopMixin:
    #: this start's current attempt: KubeSpawner's ``_start``, in a task of its own
    _attempt_task: asyncio.Future | None = None
    #: this start's last pod create request, in a task of its own (:meth:`_settle_pod_create`)
    _pod_create: asyncio.Future | None = None
    #: whether ``stop()`` deleted this start's pod (else the stop's last step does)
    _pod_deleted: bool = False
    #: gives the claim's slice back once a pod create in flight settles
    _forgetting: asyncio.Future | None = None
    #: the mark of the pod this attempt asks for (:data:`ATTEMPT_ANNOTATION`)
    _attempt_token: str = ""

    async def stop(self, now=False):
        """Stop the server: a start still running ends first, the claim is released, and
        KubeSpawner deletes the pod."""
        if replacing_pod():  # KubeSpawner replaces this start's pod (below): it goes on
            return await self._replace_pod(now)
        await self._end_start()  # a stop of a start: the start ends first
        self._release("stopped")
        result = await super().stop(now=now)
        self._pod_deleted = True
        if self.claim is not None:  # stopped: the form pre-selects what the user asked
            self.user_options = self.claim.asked_options()
        return result

    def run_post_stop_hook(self):
        """JupyterHub's last step of every stop, also of a start that failed or was cancelled
        before its pod existed (``poll`` then says stopped, so ``stop()`` is not called):
        give back what the claim holds (a slice reserved in line), then the admin's
        ``post_stop_hook``; first, if a start is left to end, end it and delete a pod it
        created after all. Synchronous otherwise: after this hook JupyterHub 6.1 reads the
        spawn's ``exception()``, which raises for a spawn cancelled meanwhile (a hub
        shutdown with spawns in line), and any await here gives it that meanwhile."""
        if self.tiers and self._start_left_over():
            return self._end_start_then_hook()
        if self.tiers:
            self._release("stopped")
        return super().run_post_stop_hook()

    async def _end_start_then_hook(self):
        await self._end_start(delete_its_pod=True)
        self._release("stopped")
        return await maybe_future(super().run_post_stop_hook())

    def _start_left_over(self) -> bool:
        """Whether a start still runs, or a cancelled one may have left a pod."""
        start, attempt, create = self._start_future, self._attempt_task, self._pod_create
        if any(t is not None and not t.done() for t in (start, attempt, create)):
            return True
        ended_badly = start is not None and (start.cancelled() or start.exception() is not None)
        return ended_badly and _made_pod(create) and not self._pod_deleted

    def _mark_attempt(self, manifest) -> None:
        """Mark the pod this attempt asks for, so that its own pod is known on a 409."""
        self._attempt_token = uuid.uuid4().hex
        annotations = manifest.metadata.annotations or {}
        manifest.metadata.annotations = {**annotations, ATTEMPT_ANNOTATION: self._attempt_token}

    async def _create_pod(self, pod, request_timeout):
        try:
            return await super()._make_create_pod_request(pod, request_timeout)
        except _OwnPodInTheWay:
            self.log.info(
                "%s: the pod in the way is this start's own (its create reached the API "
                "server after its client gave up): kept",
                self._log_name,
            )
            return True

    async def _make_create_pod_request(self, pod, request_timeout):
        """KubeSpawner's create, marked (:func:`replacing_pod`). On a 409 KubeSpawner calls
        ``stop(True)``, then creates the pod again. With a slow API server the pod in the
        way is usually this start's own, whose create timed out on the client but reached
        the server. That stop only replaces the pod: releasing the claim there had freed
        its slice for other spawns while the new pod was being created on it."""
        token = _CREATING_POD.set(True)
        try:
            create = asyncio.ensure_future(self._create_pod(pod, request_timeout))
            create.add_done_callback(_retrieved)
            self._pod_create, self._pod_deleted = create, False
            # Shielded from this start's cancellation: a request cancelled on the client
            # may still create the pod on the server, so a stop waits for its answer.
            return await asyncio.shield(create)
        finally:
            _CREATING_POD.reset(token)

    async def _end_start(self, delete_its_pod: bool = False) -> None:
        """A stop while this server starts ends the start first, then stops what it made.

        JupyterHub's DELETE of a pending spawn (and its ``start_timeout``) cancels
        ``start()``, then calls ``stop()``. Each attempt runs in a task of its own, which
        that cancellation did not reach; one cancel of a task can also be lost (hub/tasks.py),
        and a create request already sent is carried out. A 4-worker test run met the
        result: the stop found no pod and released the slice, then the start created its
        pod on it beside another spawn's (13 pods on a node of 7 slices) and failed to
        bind. A stop made by the start itself (KubeSpawner's cleanup of a failed create)
        is not a stop of the start.

        ``delete_its_pod``: the stop's last step. JupyterHub calls ``stop()`` only if
        ``poll()`` found a pod; a pod the start created after that is deleted here.
        """
        current = asyncio.current_task()
        start, attempt = self._start_future, self._attempt_task
        if current is not None and current in (start, attempt):
            return
        if any(t is not None and not t.done() for t in (start, attempt)):
            self.log.info("%s: stopped while starting: the start ends first", self._log_name)
        for task in (start, attempt):
            if task is not None:
                await cancel_and_wait(task)  # one cancel may be lost (hub/tasks.py)
        if start is None or not (start.cancelled() or start.exception() is not None):
            return  # a server that started: stop() deletes its pod
        if await self._settle_pod_create() and delete_its_pod:
            self.log.info("%s: deleting the pod its cancelled start created", self._log_name)
            await self._delete_pod()

    async def _start_ended(self, attempt: asyncio.Future | None) -> None:
        """The start failed or was cancelled (JupyterHub's DELETE of a pending spawn, its
        ``start_timeout``, a shutdown): its attempt ends too, then the claim is released.
        Quickly: JupyterHub gives a cancelled spawn a second before it stops the server."""
        if attempt is not None:
            await cancel_and_wait(attempt)
        self._release("start failed")

    def _forget_reservation(self, view, why: str) -> None:
        """Give the claim's slice back on the cache, or, while this start's pod create
        request is in flight, once it has settled: a request its client gave up on may
        still create the pod, which then holds the slice (:meth:`_settle_pod_create`)."""
        create = self._pod_create
        if create is None or create.done():
            if view.state.forget(self.pod_key):
                self.log.info("Released the reservation of %s (%s)", self._log_name, why)
            return
        self.log.info("%s: its slice stays reserved until its pod create settles", self._log_name)

        async def once_settled():
            await self._settle_pod_create()
            if self._pod_create is create and (self.claim is None or self.claim.ended):
                self._forget_reservation(view, why)  # no new start has reserved since

        self._forgetting = asyncio.ensure_future(once_settled())

    async def _settle_pod_create(self, listed_within: float = 10.0) -> bool:
        """Whether this start's pod exists: its create request, awaited if still in flight,
        made it, and it was not deleted since; if so, once the cluster view lists it, so
        that the pod holds the slice when the claim lets it go (it is deleted next)."""
        create = self._pod_create
        if create is None:
            return False
        if not create.done():
            self.log.info("%s: waiting for its pod create request to settle", self._log_name)
            await asyncio.wait({create})
        if not _made_pod(create):
            return False  # no pod: a failed create (an error, or a timeout KubeSpawner retries)
        if self._pod_deleted:
            return False
        view = self._current_view()
        deadline = time.monotonic() + listed_within
        while view is not None and view.state.pods.get(self.pod_key) is None:
            if time.monotonic() > deadline:
                self.log.warning("%s: its new pod is not listed yet", self._log_name)
                break
            await asyncio.sleep(0.05)
        return True

    async def _replace_pod(self, now: bool) -> None:
        """Delete the pod in the way of this start's create; keep the claim and its
        reservation (the start goes on, on the same slice). If that pod is this attempt's
        own, keep it: deleting it freed its slice in the cluster view (the view gives a
        reservation up once its pod is seen on the node) until the new pod was listed,
        and other spawns were decided onto it (a 4-worker run: 11 pods on 7 slices)."""
        if await self._own_pod_in_the_way():
            raise _OwnPodInTheWay
        self._next_pod_is_this_attempts()
        self.log.info("%s: replacing the pod in the way; its slice stays reserved", self._log_name)
        await dra.disown_claim(self)  # DRA: the claim outlives the pod it named as owner
        await KubeSpawner.stop(self, now=now)

    async def _own_pod_in_the_way(self) -> bool:
        token = self._attempt_token
        if not token:
            return False
        try:
            pod = await asyncio.wait_for(
                self.api.read_namespaced_pod(self.pod_name, self.namespace),
                self.k8s_api_request_timeout,
            )
        except Exception:  # gone, or no answer: replace it as KubeSpawner does
            return False
        annotations = (pod.metadata.annotations if pod.metadata else None) or {}
        return annotations.get(ATTEMPT_ANNOTATION) == token

    async def _delete_pod(self) -> None:
        try:
            await KubeSpawner.stop(self, now=True)
            self._pod_deleted = True
        except Exception as e:  # the next attempt's create will say more
            self.log.warning("%s: deleting its pod failed: %s", self._log_name, e)


def _made_pod(create: asyncio.Future | None) -> bool:
    """Whether a pod create request (done) created the pod."""
    if create is None or not create.done() or create.cancelled() or create.exception():
        return False
    return bool(create.result())


def _retrieved(future: asyncio.Future) -> None:
    """A create nobody awaits any more (its start was cancelled) logs no "never retrieved"."""
    if not future.cancelled():
        future.exception()
