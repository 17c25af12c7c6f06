"""Starting clean, pinned to the reserved node; decided again elsewhere if it cannot go there.

Every start first restores the admin's settings (:meth:`_restore_admin_config`).

A mixin of :class:`~mig_spawner.hub.spawner.MIGSpawner`. The pod gets a required node
affinity on its reserved node (merged with the admin's). While it starts, the spawn
watches for the scheduler's ``FailedScheduling`` and for its node going away (cordoned,
NotReady, deleted: :meth:`ClusterState.placement_problem`); then it releases, deletes the
pod, decides again without that node and recreates it, up to ``unschedulable_retries``
times, saying so in the progress stream. With no node left it fails at once.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from kubernetes_asyncio.client import Configuration

from ..core import messages
from ..core.claim import BOUND, DECIDED, MOVES, PINNED
from ..core.placement import pinned_terms
from ..core.pods import hub_marks
from . import dra, waiting
from .tasks import cancel_and_wait

ANNOTATION_PREFIX = "mig-spawner/"


class PlacementMixin:
    #: seconds between checks of a starting spawn that no watch event woke (a safety net)
    placement_recheck_seconds = 5.0
    #: the uids of the pods this start created, oldest first (:attr:`events` shows theirs)
    _start_pod_uids: tuple[str, ...] = ()
    #: uids of pods of this name listed before this attempt asked for its pod: not its own
    _earlier_pod_uids: frozenset[str] = frozenset()
    #: the uid of the pod this attempt created, once listed
    _attempt_pod_uid: str | None = None

    def _restore_admin_config(self, policy, profiles: list[dict[str, Any]]) -> None:
        """Every start starts from the admin's configuration, never from the last start.

        The first start records the settings a start changes (the GPU request,
        placement, labels, annotations, and whatever a tier's ``kubespawner_override``
        sets); every start puts them back before applying this start's tier and decision,
        so a retry on another tier does not also request the previous tier's GPU.
        """
        names = set(_DECIDED_TRAITS) | _override_keys(profiles)
        for tier in policy.tiers.values():
            names.update(tier.kubespawner_override)
        base = self.admin_config
        for name in sorted(names - set(base)):
            if self.has_trait(name):
                base[name] = copy.deepcopy(getattr(self, name))
        for name, value in base.items():
            setattr(self, name, copy.deepcopy(value))

    def _api_configuration(self) -> Configuration:
        """This spawner's API server, from its own settings, over the process default.

        KubeSpawner's ``load_config`` writes ``k8s_api_host`` into the process-wide default
        only the first time it sees a setting (it is cached): a later hub on an API server
        at a reused address would otherwise follow whichever server was set last.
        """
        configuration = Configuration.get_default_copy()
        if self.k8s_api_host:
            configuration.host = self.k8s_api_host
        if self.k8s_api_ssl_ca_cert:
            configuration.ssl_ca_cert = self.k8s_api_ssl_ca_cert
        if self.k8s_api_verify_ssl is not None:
            configuration.verify_ssl = self.k8s_api_verify_ssl
        return configuration

    def _place_on(self, node_name: str, view) -> None:
        """Pin the pod to ``node_name`` and write the hub's record of this spawn on it."""
        decision = self.claim.decision
        base = self.admin_config
        admin_terms = [
            t if isinstance(t, dict) else self.api.api_client.sanitize_for_serialization(t)
            for t in base["node_affinity_required"]
        ]
        if dra.active(self):  # DRA: the scheduler places it where its claim is allocated
            self.node_affinity_required, node_name = admin_terms, ""
        else:
            self.node_affinity_required = pinned_terms(
                admin_terms, view.state.nodes.get(node_name) or node_name
            )
        labels, annotations = hub_marks(
            hub=self.hub_id,
            user=self.user.name,
            team=decision.team or "",
            tier=decision.tier,
            requested_profile=decision.requested.profile,
            granted_profile=decision.granted.profile,
            granted_product=decision.granted.product,
            charge_mode=decision.charge_mode,
            node=node_name,
        )
        chain = ",".join(f"{c.slice_type.profile}:{c.outcome}" for c in decision.candidates)
        annotations.update(
            {
                ANNOTATION_PREFIX + "granted-gpu": decision.granted.gpu_name,
                ANNOTATION_PREFIX + "chain": chain,
                ANNOTATION_PREFIX + "message": decision.message,
            }
        )
        # KubeSpawner expands {fields} in these values: exact names keep their braces.
        self.extra_labels = {**base["extra_labels"], **labels}
        self.extra_annotations = {
            **base["extra_annotations"],
            **{k: v.replace("{", "{{").replace("}", "}}") for k, v in annotations.items()},
        }

    async def get_pod_manifest(self):
        """The pod, pinned where its slice is reserved *now* (a reservation may have moved)."""
        claim = self.claim
        if claim is None or PINNED not in MOVES[claim.state]:
            return await super().get_pod_manifest()  # not a start of ours (a test, a tool)
        # Any pod of this name listed now is an earlier one: this attempt's is created next.
        self._next_pod_is_this_attempts()
        view = self._current_view()
        res = view.state.reservations.get(self.pod_key) if view is not None else None
        if res is not None and claim.gpu and res.node != claim.node:
            self.log.info("%s: reservation moved to %s", self._log_name, res.node)
            self._place_on(res.node, view)
        manifest = await super().get_pod_manifest()
        self._mark_attempt(manifest)  # its own pod, if a create of it comes back 409
        if dra.active(self) and claim.gpu:
            await dra.refuse_if_misconfigured(self, view)
            manifest = dra.reference_claim(manifest, await dra.create_claim(self))
        self.claim = claim.pin(res.node if res is not None and claim.gpu else None)
        return manifest

    def _apply_decision(self, decision: Any, view: Any) -> None:
        """Add this decision (core.admission.Decision) to the admin's settings (restored
        just before), and pin its node."""
        granted, selector = decision.granted, decision.node_selector
        if dra.active(self):  # a claim instead, on any product its steps name
            selector = dict(decision.tier_node_selector)
        else:
            self.extra_resource_limits = {**self.extra_resource_limits, granted.resource: "1"}
            limits = {**self.extra_resource_guarantees, granted.resource: "1"}
            self.extra_resource_guarantees = limits
        self.node_selector = {**self.node_selector, **selector}
        tolerations = list(self.tolerations)
        tolerations += [dict(t) for t in decision.tolerations if dict(t) not in tolerations]
        self.tolerations = tolerations
        self._place_on(decision.node, view)

    async def _start(self):
        """Start; if the pod cannot be placed on its node, decide again elsewhere."""
        self.avoid_nodes = set()
        self.placement_notes = []
        self._start_pod_uids, self._earlier_pod_uids, self._attempt_pod_uid = (), frozenset(), None
        self._pod_create, self._pod_deleted, task = None, False, None
        try:
            for attempt in range(1, self.unschedulable_retries + 2):
                task = asyncio.ensure_future(super()._start())  # makes this attempt's claim
                self._attempt_task = task
                problem = await self._until_started_or_unplaceable(task)
                if problem is None:
                    result = task.result()
                    if dra.active(self):
                        await dra.granted(self)  # what the scheduler allocated
                    self._started()
                    return result
                node = (self.claim.node if self.claim is not None else None) or "?"
                if not dra.active(self):  # DRA: the node was the scheduler's to pick
                    self.avoid_nodes.add(node)
                last = attempt > self.unschedulable_retries
                await self._settle_pod_create()  # its pod exists, or never will
                self._release(f"cannot start on {node}", demand_ends=last)
                await self._delete_pod()
                if last:
                    raise self._refused(
                        f"Your server could not be placed: {problem}. Tried {attempt} "
                        f"{'time(s)' if dra.active(self) else 'node(s)'}; please try again "
                        "in a few minutes.",
                        reason="unschedulable",
                        status=503,
                    )
                again = "with a new claim" if dra.active(self) else f"without {node}"
                note = f"{problem}: deciding again {again} (try {attempt + 1})"
                self.log.warning("%s: %s", self._log_name, note)
                self.placement_notes.append(note)
            raise AssertionError("unreachable")  # pragma: no cover
        except BaseException:
            await self._start_ended(task)  # nothing of it goes on (hub/startstop.py)
            raise

    async def _until_started_or_unplaceable(self, task: asyncio.Future) -> str | None:
        """Wait for ``task``; None when it ended, else why its pod cannot be placed.

        Woken by the task's end and, once the claim holds a slice, by the cluster view
        when a watch event touches this pod or its node (hub/watch.py), not by a poll;
        :attr:`placement_recheck_seconds` is the safety net. Two phases still poll every
        0.2 s: deciding (no claim held yet, short), and a created pod not yet bound,
        whose FailedScheduling event arrives through KubeSpawner's event reflector,
        which wakes nobody.
        """
        key = self.pod_key
        woken = asyncio.Event()
        task.add_done_callback(lambda _: woken.set())
        watching = None
        try:
            while True:
                woken.clear()
                if task.done():
                    return None
                claim = self.claim
                timeout = 0.2
                if claim is not None and claim.ended:
                    pass  # between attempts, or failing: the task ends soon
                elif claim is not None and claim.grant is not None and not claim.gpu:
                    timeout = self.placement_recheck_seconds  # a CPU profile: its end
                elif claim is not None and claim.holds:
                    view = self._current_view()
                    if view is not None and watching is None:
                        watching = view
                        view.wake_on_change(key, woken)
                    problem = view.state.placement_problem(key) if view is not None else None
                    if problem is None and claim.node:
                        problem = self._failed_scheduling()
                    if problem is None and dra.active(self):
                        problem = dra.unplaceable(self)
                        dra.note_allocation(self)  # the scheduler's pick, told at once
                        await dra.own_claim(self)  # the pod owns its claim (GC)
                    if problem is not None:
                        await cancel_and_wait(task)  # one cancel may be lost (hub/tasks.py)
                        return problem
                    pod = view.state.pods.get(key) if view is not None else None
                    if watching is not None and (pod is None or pod.node):
                        timeout = self.placement_recheck_seconds  # not being scheduled
                try:
                    await asyncio.wait_for(woken.wait(), timeout)
                except asyncio.TimeoutError:  # (TimeoutError itself only from Python 3.11)
                    pass
        finally:
            if watching is not None:
                watching.wake_on_change(key, None)

    def _failed_scheduling(self) -> str | None:
        """The scheduler's word on this attempt's pod, if it could not place it."""
        try:
            events = self.events if self.events_enabled else []
        except Exception:  # no event watch yet
            return None
        view = self._current_view()
        pod = view.state.pods.get(self.pod_key) if view is not None else None
        attempt = self._attempt_pod_uid
        for event in events:
            if self.tiers and _involved_uid(event) != attempt:
                continue  # an earlier attempt's pod (this start's, deleted)
            if event.get("reason") == "FailedScheduling" and (pod is None or not pod.node):
                message = str(event.get("message") or "")[:300]
                if _WAITS_FOR_VOLUMES in message:
                    continue  # its volume claim binds in a moment: not its node's fault
                if dra.active(self):
                    return f"the scheduler cannot allocate a GPU slice for it ({message})"
                return f"the scheduler cannot place it on {self.claim.node} ({message})"
        return None

    # ------------------------------------------------------------ this start's pod events

    @property
    def events(self) -> list[dict]:
        """The events of the pods this start created, oldest first (KubeSpawner's
        ``progress`` and :meth:`_failed_scheduling` read them).

        KubeSpawner lists the events of every pod that had this *name*, from the point
        its ``_start`` marks; an API server keeps events an hour, and the progress page
        may read them before that mark (a start still deciding, or waiting for a slice),
        so an earlier pod's events would show as this start's. Here an event counts only
        if its ``involvedObject.uid`` is a pod this start created: before its first pod is
        created, there is none. The list only grows, as KubeSpawner's progress expects.
        Without tiers, KubeSpawner's own list.
        """
        if not self.tiers:
            return super().events
        reflector = self.event_reflector
        if reflector is None:
            return []
        self._note_attempt_pod()
        own = set(self._start_pod_uids)
        if not own:
            return []
        return [e for e in reflector.events if _involved_uid(e) in own]

    def _note_attempt_pod(self) -> None:
        """Once this attempt's pod is created and listed, remember its uid."""
        claim = self.claim
        if self._attempt_pod_uid is not None or claim is None or claim.state not in (PINNED, BOUND):
            return
        for uid in self._listed_pod_uids():
            if uid not in self._earlier_pod_uids and uid not in self._start_pod_uids:
                self._attempt_pod_uid = uid
                self._start_pod_uids = (*self._start_pod_uids, uid)
                return

    def _next_pod_is_this_attempts(self) -> None:
        """Every pod of this name listed now is an earlier one: the next is this attempt's."""
        self._earlier_pod_uids = self._earlier_pod_uids | set(self._listed_pod_uids())
        self._attempt_pod_uid = None

    def _listed_pod_uids(self) -> list[str]:
        """The uid of the pod of this name that KubeSpawner's pod reflector and the cluster
        view list now (each may lag the other)."""
        uids = []
        reflector = self.pod_reflector
        listed = reflector.pods.get(self.pod_key) if reflector is not None else None
        uid = ((listed or {}).get("metadata") or {}).get("uid")
        if uid:
            uids.append(uid)
        view = self._current_view()
        pod = view.state.pods.get(self.pod_key) if view is not None else None
        if pod is not None and pod.uid and pod.uid not in uids:
            uids.append(pod.uid)
        return uids

    def _started(self) -> None:
        """The server runs: its claim is bound, and the hub shows what it got."""
        claim = self.claim
        if claim is None:
            return  # no tiers: KubeSpawner, unchanged
        if claim.state == DECIDED:  # no pod manifest was asked of us (KubeSpawner's own)
            claim = claim.pin()
        self.claim = claim = claim.bind(now=time.time())
        self.user_options = claim.shown_options()  # REST model and admin page (core/claim.py)
        if not claim.gpu or claim.decision is None:
            return  # a CPU profile: KubeSpawner logs its start
        view = self._current_view()
        pod = view.state.pods.get(self.pod_key) if view is not None else None
        self.log.info(
            "Started %s: %s on node %s",
            self._log_name,
            claim.decision.granted.label,
            (pod.node if pod is not None and pod.node else None) or claim.node,
        )

    async def progress(self):
        """Our decision first (the slice, and on a fallback why); then every line, which the
        progress page shows as its headline, names the slice and that reason. The claim is
        read at each event: the page may ask for progress before start() has decided.
        While the start waits in line, only the line's messages (hub/waiting.py): a pod
        event then would be an earlier pod's of the same name."""
        async for event in waiting.progress(self):
            yield event
        label, told = None, 0
        async for event in super().progress():
            claim = self.claim
            decision = claim.decision if claim is not None else None
            if label is None and decision is not None and decision.admitted:
                label = messages.progress_label(decision.granted, decision.candidates)
                yield {"progress": 2, "message": decision.message}
            for retry in self.placement_notes[told:]:
                told += 1
                yield {"progress": event.get("progress", 50), "message": retry}
            if label and event.get("message"):
                event = {**event, "message": f"{label}: {event['message']}"}
            yield event
        for retry in self.placement_notes[told:]:
            yield {"message": retry}


def _involved_uid(event: dict) -> str | None:
    return (event.get("involvedObject") or {}).get("uid") or None


#: kube-scheduler's word for a pod whose PersistentVolumeClaim is not bound yet (Zero to
#: JupyterHub's home volume, created just before the pod): it places the pod once the claim
#: binds, on any node, so it says nothing against the reserved node.
_WAITS_FOR_VOLUMES = "unbound immediate PersistentVolumeClaims"

#: What a start computes from the admin's settings plus its decision.
_DECIDED_TRAITS = (
    "extra_resource_limits",
    "extra_resource_guarantees",
    "node_selector",
    "node_affinity_required",
    "tolerations",
    "extra_labels",
    "extra_annotations",
    "environment",
)


def _override_keys(profiles: list[dict[str, Any]]) -> set[str]:
    """Every setting a profile, or a choice of one of its options, may override."""
    keys: set[str] = set()
    for profile in profiles:
        keys.update(profile.get("kubespawner_override") or {})
        for option in (profile.get("profile_options") or {}).values():
            for choice in (option.get("choices") or {}).values():
                keys.update(choice.get("kubespawner_override") or {})
    return keys
