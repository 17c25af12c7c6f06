"""The hub-wide waiting line: a spawn refused for capacity waits for a slice instead.

One :class:`WaitingLine` per :class:`~mig_spawner.hub.watch.ClusterView` (so per event
loop and API server), reached as ``spawner.waiting_line()``. The order and positions are
the pure :class:`mig_spawner.core.waitline.Line`'s.

How a start goes through it (``MIGSpawner.run_pre_spawn_hook`` calls
:func:`mig_spawner.hub.waitstart.decide_first`:
JupyterHub awaits that hook *before* it applies ``start_timeout`` to ``start()``, so the
wait is bounded by the tier's ``max_wait`` alone, and no pod exists while it waits):

1. the spawn joins the line and one *admission pass* runs at once;
2. the pass walks the line in its order and decides each place with
   :func:`mig_spawner.core.admission.admit` (the one decision: fallback chain, quota
   checked again now), deciding and assuming in one synchronous step: a newcomer is
   admitted only through the pass, behind everyone ahead of it, so it never takes a slice
   a waiting spawn ahead of it can use;
3. admitted: the spawn leaves the line with its slice reserved, and ``load_user_options``
   reuses that decision (``waitstart.admitted_early``); refused by the quota (or anything but
   capacity): refused at once with the decision's message; refused for capacity with
   the tier's ``max_wait`` at 0, or with the quota used up so that no freed slice
   could help: refused at once;
4. else it waits; a pass runs again on every watch event that may free room (a pod gone
   or finished, a node added or changed, a relist) and on every reservation a spawner
   gives back, coalesced to one pass per loop iteration;
5. ``max_wait`` running out ends the spawn with :func:`mig_spawner.core.messages.line_timeout`;
   a cancelled spawn (JupyterHub's DELETE of a pending server cancels it, then stops it)
   leaves the line at once.

Every change is announced to :meth:`WaitingLine.subscribe`'s callbacks with the persisted
document (:meth:`mig_spawner.core.waitline.Line.to_dict`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from traitlets import Float

from ..core import admission, messages, reach
from ..core.claim import Claim
from ..core.eta import eta_seconds
from ..core.linedoc import KeptPlace
from ..core.pods import unix_seconds
from ..core.policy import DEFAULT_MAX_WAIT_CAP, ConfigError, Policy
from ..core.waitline import Line, Place, add_history
from . import linestore

if TYPE_CHECKING:  # pragma: no cover
    from .watch import ClusterView

ADMITTED, CANCELLED, TIMED_OUT, REFUSED = "admitted", "cancelled", "timed_out", "refused"
#: seconds between progress messages when nothing changed (proxies keep the stream open)
HEARTBEAT = 30.0


def max_wait_cap_trait() -> Float:
    """``MIGSpawner.max_wait_cap`` (defined here to keep the spawner's module small)."""
    return Float(
        DEFAULT_MAX_WAIT_CAP,
        config=True,
        help="""
        The longest ``max_wait`` any tier may set, in seconds (default 3600: one hour). A
        tier above it is a configuration error. The waiting line: a tier's ``max_wait``
        (seconds, default 0) lets a spawn that finds every slice it could use taken wait
        for one instead of being refused; it is admitted the moment a slice frees,
        first come, first served within a team, the team with fewer GPU servers running
        first. A waiting spawn creates no pod and holds no quota; ``start_timeout``
        applies from its admission on. Waiting spawns count as pending spawns for
        JupyterHub's ``concurrent_spawn_limit`` (default 100; Zero to JupyterHub's
        ``hub.concurrentSpawnLimit`` 64): once that many wait, JupyterHub answers 429 to
        every new spawn, GPU or not. Raise it above the number of users you expect to
        wait at once.
        """,
    )


class _Wait:
    """One start in the line (or about to join it)."""

    def __init__(self, spawner, request: admission.SpawnRequest, policy: Policy):
        self.spawner = spawner
        self.request = request
        self.policy = policy
        self.place: Place | None = None
        self.future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.changed = asyncio.Event()
        self.decision: admission.Decision | None = None  # the last one
        self.joined = time.time()
        self.enqueued = False  # True once it waited (admitted at once: not a wait)


class WaitingLine:
    """The places waiting on one cluster view, and the passes that admit them."""

    def __init__(self, view: ClusterView, logger: Any = None):
        self.view = view
        self.log = logger or logging.getLogger("mig_spawner.hub.waiting")
        self.hub_id = ""
        self.line = Line()
        #: places restored after a hub restart: key -> KeptPlace (line-store fills it)
        self.kept: dict[str, KeptPlace] = {}
        #: tier -> ended session lengths in seconds, newest last (at most 500)
        self.history: dict[str, list[float]] = {}
        self._subscribers: list[Callable[[dict], None]] = []
        self._waits: dict[str, _Wait] = {}
        #: key -> the claim a start decided in the line, for its load_user_options
        self._early: dict[str, Claim] = {}
        self._pass_soon = False
        #: pod keys whose start is deciding in the line now (progress waits for them)
        self.deciding: set[str] = set()
        self.passes = 0
        #: the ConfigMap that keeps this line across hub restarts (hub/linestore.py)
        self.store: linestore.LineStore | None = None
        self._attaching: asyncio.Future | None = None
        #: (state version, now to 10 s) -> tier -> running servers' ages (for the ETAs)
        self._ages: tuple[Any, dict[str, list[float]]] = (None, {})
        view.add_listener(self._on_cluster_change)

    def attach_store(self, spawner) -> None:
        """Keep the line in the cluster (once, when a tier waits): load what a previous hub
        saved into ``kept`` and ``history``, and save each change from then on."""
        if self._attaching is not None:
            return

        async def attach() -> None:
            self.store = await linestore.attach(self, **linestore.settings_of(spawner))

        self._attaching = asyncio.ensure_future(attach())

    async def ready(self, timeout: float = 3.0) -> None:
        """Wait (at most ``timeout``) for the saved line to be read: a kept place counts
        from its first request. Later, linestore takes it in when the read succeeds."""
        if self._attaching is not None and not self._attaching.done():
            await asyncio.wait([asyncio.shield(self._attaching)], timeout=timeout)

    async def close(self) -> None:
        """Write what is pending and stop saving (the view stops)."""
        if self._attaching is not None:
            await asyncio.gather(self._attaching, return_exceptions=True)
        if self.store is not None:
            await self.store.close()

    # ------------------------------------------------------------ reads

    def subscribe(self, callback: Callable[[dict], None]) -> None:
        """``callback(doc)`` after every change, with the persisted document."""
        self._subscribers.append(callback)

    def document(self) -> dict[str, Any]:
        return self.line.to_dict(
            hub=self.hub_id,
            saved_at=time.time(),
            history=self.history,
            eta=lambda place, position: self._eta(place, position),
        )

    def lengths(self) -> dict[str, int]:
        """Tier -> how many wait for it."""
        return self.line.lengths()

    def eta(self, place: Place) -> float | None:
        return self._eta(place, self.line.position(place.key) or 1)

    def _eta(self, place: Place, position: int) -> float | None:
        wait = self._waits.get(place.key)
        policy = wait.policy if wait is not None else None
        tier = policy.tier(place.tier) if policy is not None else None
        ages = self._running_ages(tier) if tier is not None else []
        return eta_seconds(position, ages, self.history.get(place.tier, []))

    def _running_ages(self, tier) -> list[float]:
        """Ages of the running servers on slices ``tier`` could use: one scan of the pods
        per tier and cluster version (to 10 s), however many places ask."""
        state = self.view.state
        snapshot = state.snapshot()
        now = time.time()
        key = (snapshot.key, int(now // 10))
        if self._ages[0] != key:
            self._ages = (key, {})
        ages = self._ages[1].get(tier.slug)
        if ages is None:  # pods on the slots the tier may be granted (its fallback, pools)
            slots = reach.tier_reach(tier, snapshot)
            ages = [
                max(now - (unix_seconds(pod.created) or now), 0.0)
                for pod in state.pods.values()
                if pod.active
                and pod.node
                and pod.created
                and any((pod.node, resource) in slots for resource in pod.requests)
            ]
            self._ages[1][tier.slug] = ages
        return ages

    def message(self, key: str) -> str | None:
        """What the progress stream says to the spawn ``key`` now (None: not in line)."""
        wait = self._waits.get(key)
        place = self.line.get(key)
        if wait is None or place is None:
            return None
        position = self.line.position(key) or 1
        tier = wait.policy.tier(place.tier)
        if tier is None:  # the tier left the policy: the next pass refuses it
            return None
        requested = wait.decision.requested if wait.decision is not None else None
        return messages.in_line(position, tier, requested, self._eta(place, position))

    # ------------------------------------------------------------ changes

    def _changed(self) -> None:
        for wait in self._waits.values():
            wait.changed.set()
        if self._subscribers:
            doc = self.document()
            for callback in list(self._subscribers):
                try:
                    callback(doc)
                except Exception:
                    self.log.exception("A waiting-line subscriber failed")

    def _changed_for(self, key: str) -> None:
        wait = self._waits.get(key)
        if wait is not None:
            wait.changed.set()

    def add_history(self, tier: str, seconds: float) -> None:
        add_history(self.history, tier, seconds)
        self._changed()

    def join(self, wait: _Wait, place: Place) -> None:
        self._waits[place.key] = wait
        wait.place = place
        self.line.add(place)
        if self.view.reclaimer is not None:  # an idle server may make room (hub/reclaim.py)
            self.view.reclaimer.soon()

    def waiting(self, key: str) -> bool:
        """Whether the spawn ``key`` waits in line now (not admitted, not ended)."""
        wait = self._waits.get(key)
        return wait is not None and not wait.future.done()

    def leave(self, key: str, outcome: str | None) -> bool:
        """``key`` leaves the line (``outcome``: metrics and the log; None: a tier that
        does not wait, counted as a decision only); True if it was in."""
        wait = self._waits.pop(key, None)
        place = self.line.remove(key)
        if wait is not None and not wait.future.done():
            wait.future.cancel()
        if place is None or wait is None:
            return False
        if outcome is None or not wait.enqueued:
            return True
        spawner = wait.spawner
        waited = time.time() - wait.joined
        spawner.hub_metrics.line_left(place.tier, outcome, waited)
        spawner.log.info(
            "line %s user=%s server=%s tier=%s waited=%.1fs waiting=%d",
            "admit" if outcome == ADMITTED else outcome,
            place.user,
            place.server_name or "-",
            place.tier,
            waited,
            len(self.line),
        )
        self._changed()
        return True

    # ------------------------------------------------------------ admission

    def _on_cluster_change(self, kind: str, obj: Any) -> None:
        """A watch event was applied: pass again if it may have freed room."""
        if not self.line:
            return
        if kind == "pods" and isinstance(obj, dict):
            meta = obj.get("metadata") or {}
            pod = self.view.state.pods.get(f"{meta.get('namespace')}/{meta.get('name')}")
            if pod is not None and pod.active:
                return  # it still holds what it held
        self.pass_soon()

    def pass_soon(self) -> None:
        """Run one admission pass on the next loop iteration (coalesced)."""
        if self._pass_soon or not self.line:
            return
        self._pass_soon = True
        asyncio.get_running_loop().call_soon(self._scheduled_pass)

    def _scheduled_pass(self) -> None:
        self._pass_soon = False
        try:
            self.admission_pass()
        except Exception:  # never let one bad place stop the line
            self.log.exception("The waiting line's admission pass failed")

    def admission_pass(self) -> None:
        """Decide every place in line order, synchronously (no await: nobody can slip in).

        A tier refused for capacity is not decided again in this pass: the pass only
        takes slices, so its places behind would find its chain full too."""
        if not self.line:
            return
        self.passes += 1
        self.line.set_running(self._running())
        policy = next((w.policy for w in self._waits.values()), None)
        if policy is not None:  # the narrower tier first among teams running as many
            self.line.set_narrowness(reach.narrowness(policy, self.view.state))
        full: dict[str, admission.Decision] = {}  # tier -> its capacity refusal
        changed = False
        for place in self.line.order():
            wait = self._waits.get(place.key)
            if wait is None or wait.future.done():
                continue
            if place.tier in full:
                wait.decision = full[place.tier]
                continue
            spawner = wait.spawner
            try:
                policy = spawner.policy
            except ConfigError:
                policy = wait.policy
            wait.policy = policy
            started = time.perf_counter()
            decision = admission.admit(wait.request, policy, self.view.state, pod_key=place.key)
            wait.decision = decision
            if decision.admitted or not admission.may_wait(
                decision, wait.request, policy, self.view.state
            ):
                spawner.hub_metrics.record(
                    decision,
                    user=place.user,
                    server=place.server_name,
                    seconds=time.perf_counter() - started,
                    logger=spawner.log,
                )
                wait.future.set_result(decision)
                changed = True
            elif decision.code == admission.CAPACITY:
                full[place.tier] = decision
        if changed:
            for wait in list(self._waits.values()):
                wait.changed.set()

    def _running(self) -> dict[str, int]:
        """GPU servers running (or reserved) per team, the order's first key."""
        running: dict[str, int] = {}
        state = self.view.state
        for pod in state.pods.values():
            if pod.managed and pod.active:
                running[pod.team] = running.get(pod.team, 0) + 1
        for res in state.reservations.values():
            if res.key not in state.pods:
                running[res.team] = running.get(res.team, 0) + 1
        return running


def line_of(spawner) -> WaitingLine:
    """The hub-wide line of ``spawner``'s cluster view, made on first use."""
    view = spawner.cluster_view()
    if view.waiting_line is None:
        view.waiting_line = WaitingLine(view, spawner.log)
        view.waiting_line.hub_id = spawner.hub_id
    line = view.waiting_line
    if line._attaching is None:
        try:
            tiers = spawner.policy.tiers.values()
        except ConfigError:  # load_user_options refuses the start with its own words
            return line
        if any(t.max_wait > 0 for t in tiers):
            line.attach_store(spawner)
    return line


async def progress(spawner):
    """Progress events while ``spawner`` waits in line: at once, on each change of its
    position or ETA, and at least every :data:`HEARTBEAT` seconds. Ends when it leaves."""
    view = spawner._current_view()
    line = getattr(view, "waiting_line", None) if view is not None else None
    if line is None:
        return
    key = spawner.pod_key
    last, sent = None, 0.0
    while True:
        wait = line._waits.get(key)
        if wait is None or wait.future.done():
            if key not in line.deciding:
                return
            await asyncio.sleep(0.1)  # deciding, not (yet) in line
            continue
        wait.changed.clear()  # before reading: a change while the event is sent wakes us
        text = line.message(key)
        now = time.monotonic()
        if text is not None and (text != last or now - sent >= HEARTBEAT):
            last, sent = text, now
            yield {"progress": 1, "message": text}
        try:
            await asyncio.wait_for(wait.changed.wait(), HEARTBEAT)
        except asyncio.TimeoutError:
            pass
