"""A start's way through the waiting line: the hooks MIGSpawner calls (hub/waiting.py).

``run_pre_spawn_hook`` -> :func:`decide_first` (join, pass, wait, admitted or refused);
``load_user_options`` -> :func:`admitted_early` (reuse that decision) or :func:`admit_now`
(decide at once: a direct ``start()``, or a retry on another node); ``_release`` ->
:func:`left`; ``_end`` -> :func:`claim_ended` (a session's length for the ETA history).
"""

from __future__ import annotations

import asyncio
import time

from ..core import admission, messages
from ..core.claim import Claim, grant_record
from ..core.options import OptionsError, parse_options
from ..core.policy import ConfigError, Policy
from ..core.waitline import Place
from . import dra, kueue
from .refusals import STATUS
from .waiting import ADMITTED, CANCELLED, REFUSED, TIMED_OUT, WaitingLine, _Wait, line_of


async def decide_first(spawner) -> None:
    """Before ``start()``: decide this start in the line, waiting while it is full.

    Leaves nothing to do for a CPU profile or a request that is not well formed (then
    ``load_user_options`` decides and refuses as without a line); raises the refusal of a
    quota, a timeout or a capacity refusal of a tier that does not wait.
    """
    line = line_of(spawner)
    line.deciding.add(spawner.pod_key)
    try:
        await line.ready()
        await _decide_first(spawner, line)
    finally:
        line.deciding.discard(spawner.pod_key)
        line._changed_for(spawner.pod_key)
    spawner.set_start_timeout()  # Kueue mode: the tier's max_wait on top (hub/kueue.py)


async def _decide_first(spawner, line: WaitingLine) -> None:
    try:
        policy = spawner.policy
        profiles = await spawner.offered_profiles(policy)
        options = parse_options(spawner.user_options or {}, profiles, tuple(policy.tiers))
    except (ConfigError, OptionsError):
        return  # load_user_options refuses it with the same words
    if options.tier is None or policy.tier(options.tier) is None:
        return
    view = spawner.cluster_view()
    if not await view.wait_known(spawner.cluster_sync_timeout):
        return  # load_user_options refuses: availability unknown
    await dra.refuse_if_misconfigured(spawner, view)  # backend "dra": its DeviceClass, devices
    await kueue.wait_synced(view, min(spawner.cluster_sync_timeout, 5))  # else: Kueue decides
    spawner._release("a new start")
    now = time.time()
    claim = Claim.request_for(
        spawner.pod_key, spawner.user.name, spawner.name, spawner.user_options, now=now
    )
    spawner.claim = claim
    groups = spawner._groups()
    request = admission.SpawnRequest(
        user=spawner.user.name, tier=options.tier, groups=groups, team=options.team,
        server_name=spawner.name,
    )  # fmt: skip
    tier = policy.tiers[options.tier]
    key = spawner.pod_key
    wait = _Wait(spawner, request, policy)
    kept = line.kept.pop(key, None)  # its place before a hub restart, for the same tier
    taken = kept is not None and kept.tier == options.tier and now < kept.until
    requested_at = kept.requested_at if taken else now
    team = options.team or next(iter(policy.teams_for(groups)), "")
    place = Place(
        key, spawner.user.name, spawner.name, options.tier, team, groups, requested_at,
        now + tier.max_wait,
    )  # fmt: skip
    try:
        line.join(wait, place)
        line.admission_pass()
        if not wait.future.done():
            # its own decision: the pass lends a full tier's to the places behind
            own = admission.decide(request, policy, view.state)
            if tier.max_wait <= 0:  # refused at once, as without a line
                line.leave(key, None)
                return _refuse(spawner, own, record=True)
            check = admission.requested_quota(own, request, policy, view.state)
            if check is not None and not check.ok:  # the quota would refuse it anyway
                line.leave(key, None)
                message = messages.over_quota_while_full(tier, own.team, check)
                spawner._end(claim.refuse(message, own, now=time.time()))
                raise spawner._refused(message, reason=admission.QUOTA, status=403)
            spawner.claim = claim.wait(messages.in_line(1, tier, None, None))
            wait.enqueued = True
            spawner.log.info(
                "line enqueue user=%s server=%s tier=%s team=%s position=%s waiting=%d",
                spawner.user.name, spawner.name or "-", options.tier, team or "-",
                line.line.position(key), len(line.line),
            )  # fmt: skip
            line._changed()
            done, _ = await asyncio.wait({wait.future}, timeout=max(place.deadline - now, 0))
            if not done:
                position = line.line.position(key)
                line.leave(key, TIMED_OUT)
                message = messages.line_timeout(
                    time.time() - now, position, wait.decision.requested if wait.decision else None
                )
                raise spawner._refused(message, reason="line-timeout", status=503)
        decision = wait.future.result()
    except BaseException:
        line.leave(key, CANCELLED)  # (no-op when it left already: a timeout, a refusal)
        spawner._release("cancelled while waiting")
        raise
    line.leave(key, ADMITTED if decision.admitted else REFUSED)
    if not decision.admitted:
        return _refuse(spawner, decision)
    record = _grant(policy, options.profile, decision)
    spawner.claim = spawner.claim.decide(record, decision, now=time.time()).reserve()
    line._early[key] = spawner.claim


async def admit_now(spawner, policy: Policy, options) -> admission.Decision:
    """Decide and reserve at once (a start that did not decide in the line first)."""
    view = spawner.cluster_view()
    if not await view.wait_known(spawner.cluster_sync_timeout):
        spawner.log.warning("Refusing spawn: cluster state unknown (%s)", view.problem)
        raise spawner._refused(
            messages.availability_unknown(), reason="availability-unknown", status=503
        )
    await kueue.wait_synced(view, min(spawner.cluster_sync_timeout, 5))  # else: Kueue decides
    request = admission.SpawnRequest(
        user=spawner.user.name,
        tier=options.tier,
        groups=spawner._groups(),
        team=options.team,
        server_name=spawner.name,
        avoid_nodes=frozenset(spawner.avoid_nodes),
    )
    started = time.perf_counter()
    decision = admission.admit(request, policy, view.state, pod_key=spawner.pod_key)
    elapsed = time.perf_counter() - started
    # One line at info per decision (a refusal is an answer, not an error), no traceback.
    spawner.hub_metrics.record(
        decision, user=spawner.user.name, server=spawner.name, seconds=elapsed, logger=spawner.log
    )
    if not decision.admitted:
        spawner._end(spawner.claim.refuse(decision.message, decision, now=time.time()))
        raise spawner._refused(decision.message, reason=decision.code, status=STATUS[decision.code])
    return decision


def _grant(policy: Policy, profile, decision) -> dict:
    return grant_record(profile, decision, policy.tiers[decision.tier].display_name)


def _refuse(spawner, decision: admission.Decision, record: bool = False):
    if record:
        spawner.hub_metrics.record(
            decision, user=spawner.user.name, server=spawner.name, seconds=0.0,
            logger=spawner.log,
        )  # fmt: skip
    spawner._end(spawner.claim.refuse(decision.message, decision, now=time.time()))
    raise spawner._refused(
        decision.message, reason=decision.code, status=STATUS.get(decision.code, 503)
    )


def admitted_early(spawner) -> Claim | None:
    """The claim this start decided in the line (once; a retry elsewhere decides again)."""
    view = spawner._current_view()
    line = getattr(view, "waiting_line", None) if view is not None else None
    claim = line._early.pop(spawner.pod_key, None) if line is not None else None
    if claim is None or claim is not spawner.claim or spawner.avoid_nodes:
        return None
    return claim


def left(spawner, why: str) -> None:
    """The spawner gave back what it held (stop, failure): leave the line, pass again."""
    view = spawner._current_view()
    line = getattr(view, "waiting_line", None) if view is not None else None
    if line is None:
        return
    line._early.pop(spawner.pod_key, None)
    line.leave(spawner.pod_key, CANCELLED)
    line.pass_soon()


def claim_ended(spawner, claim: Claim) -> None:
    """A bound claim ended: its session length joins its tier's history (the ETA's)."""
    if claim.bound_at is None or claim.ended_at is None or not claim.grant:
        return
    tier = claim.grant.get("tier")
    view = spawner._current_view()
    line = getattr(view, "waiting_line", None) if view is not None else None
    if tier and line is not None:
        line.add_history(tier, max(claim.ended_at - claim.bound_at, 0.0))
