"""Reclaim: which idle GPU servers to warn, and which to stop, for the spawns in line.

One pass (:func:`plan`) reads the waiting line, the servers' idleness and the warnings in
force, and says what to do now. Pure: the hub's shell (:mod:`mig_spawner.hub.reclaim`)
gathers the activity, applies the plan, logs it and counts it.

The rules, opt-in per tier (:mod:`.reclaimrules`):

- **Only for someone waiting.** A server is reclaimed only for a place in line its slice
  would serve (the place's tier reaches the slot, and the waiting user's quota takes a
  slice of that size), one server per place, in line order: never more than the line
  needs. A server already stopping serves the first place it helps.
- **Only an idle server**, by every signal that exists (:func:`.idle.judge`): no hub
  activity for the tier's ``idle_after`` and, where Prometheus is configured, the GPU
  idle over the window by a clear reading. Not known is not idle.
- **Warned first.** A server is warned (its user sees it on the hub's home page); it is
  stopped only once ``grace`` has run out and it is still idle and still needed. Activity
  or the line emptying withdraws the warning.
- **Over-time servers and borrowers first**: a server past its tier's ``max_session``
  (stopping anyway) or already stopping serves the first place it helps before any idle
  server is chosen; among the idle servers that would serve a place, one already warned,
  then one on a fallback slice, then the longest idle.
- **Never an exempt user's server** (``MIGSpawner.reclaim_exempt_users``).
- ``max_session``: a server older than it is warned and stopped after ``grace`` whether
  or not anyone waits and whatever its activity (the idle culler's ``--max-age``).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .chains import tier_chain
from .cluster import ClusterState
from .idle import GpuReading, Idleness, duration, judge
from .pods import Charge, PodInfo, unix_seconds
from .policy import Policy, Tier
from .quota import check_quota, released
from .reach import tier_reach
from .snapshot import Snapshot
from .waitline import Place

IDLE, MAX_SESSION = "idle", "max_session"
#: ``MIGSpawner.gpu_idle_below``'s default: a GPU under 5 % engine activity is idle
DEFAULT_GPU_IDLE_BELOW = 0.05
#: a tier without ``reclaim.idle_after`` shows its servers idle after an hour
DEFAULT_IDLE_AFTER = 3600.0


@dataclass(frozen=True)
class Warned:
    """A warning in force: the server will be stopped at ``deadline`` unless withdrawn."""

    key: str  # the pod's "namespace/name"
    user: str
    server_name: str
    tier: str
    tier_name: str
    holds: str  # the slice it runs on
    reason: str  # IDLE or MAX_SESSION
    warned_at: float
    deadline: float
    why: str  # "idle 3 h, GPU 0 %" or "running 8 h (1g notebook allows 8 h)"
    for_key: str = ""  # IDLE: the place it was warned for
    uid: str = ""  # the pod's uid: a new pod of the same name is not the one warned

    def message(self, now: float) -> str:
        """What its user reads (the home page)."""
        who = f"Your server “{self.server_name}”" if self.server_name else "Your server"
        when = f"in {duration(max(self.deadline - now, 0))} (at {clock(self.deadline)})"
        if self.reason == MAX_SESSION:
            return (
                f"{who} ({self.tier_name}) is {self.why}. It will be stopped {when}:"
                " save your work."
            )
        return (
            f"{who} ({self.tier_name}, {self.holds}) is {self.why}, and someone is waiting"
            f" for a GPU slice. It will be stopped {when} unless you use it."
        )

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "server_name": self.server_name,
            "tier": self.tier,
            "reason": self.reason,
            "deadline": self.deadline,
            "seconds_left": max(self.deadline - now, 0),
            "message": self.message(now),
        }


@dataclass(frozen=True)
class Stop:
    """A server to stop now, and why (one log line; its user reads ``notice``)."""

    warned: Warned
    #: for the log and the metric: "idle 3 h, GPU 0 %; for alice's spawn waiting for ..."
    detail: str
    for_key: str = ""  # IDLE: the place in line it is stopped for (its key)

    @property
    def key(self) -> str:
        return self.warned.key

    @property
    def reason(self) -> str:
        return self.warned.reason

    def notice(self, at: float) -> str:
        """What its user reads at their next login."""
        w = self.warned
        who = f"Your server “{w.server_name}”" if w.server_name else "Your server"
        if w.reason == MAX_SESSION:
            why = f"it was {w.why}"
        else:
            why = f"it was {w.why} and someone was waiting for its {w.holds} slice"
        warned = clock(w.warned_at)
        return f"{who} ({w.tier_name}) was stopped at {clock(at)}: {why} (warned at {warned})."


@dataclass(frozen=True)
class Candidate:
    """A running server of a tier with reclaim rules, as this pass read it."""

    pod: PodInfo
    tier: Tier
    idleness: Idleness
    age: float | None  # seconds since its pod was created (None: unknown)
    exempt: bool

    @property
    def key(self) -> str:
        return self.pod.key

    @property
    def borrower(self) -> bool:
        pod = self.pod
        return bool(pod.requested_profile and pod.profile and pod.profile != pod.requested_profile)

    @property
    def over_time(self) -> bool:
        limit = self.tier.reclaim.max_session if self.tier.reclaim else None
        return limit is not None and self.age is not None and self.age >= limit

    @property
    def reclaimable(self) -> bool:
        """Idle, of a tier whose idle servers may be reclaimed, and not exempt."""
        rules = self.tier.reclaim
        return (
            rules is not None and rules.idle_after is not None and self.idleness.idle
        ) and not self.exempt

    @property
    def shown(self) -> str:
        """As the home page and the admins' page show it: "idle 3 h, GPU 0 %"."""
        return self.idleness.shown


@dataclass(frozen=True)
class Plan:
    warnings: Mapping[str, Warned]  # every warning in force after this pass
    warned: tuple[Warned, ...] = ()  # new this pass
    withdrawn: tuple[tuple[Warned, str], ...] = ()  # (the warning, why)
    stops: tuple[Stop, ...] = ()
    candidates: tuple[Candidate, ...] = field(default=(), compare=False)


def plan(
    policy: Policy,
    state: ClusterState | Snapshot,
    places: Iterable[Place],
    *,
    activity: Mapping[str, float | None],
    gpu: Mapping[str, GpuReading] | None,
    warnings: Mapping[str, Warned],
    now: float,
    exempt: Iterable[str] = (),
    stopping: Iterable[str] = (),
    gpu_below: float = DEFAULT_GPU_IDLE_BELOW,
) -> Plan:
    """What to warn, withdraw and stop now.

    ``places``: the line in its order. ``activity``: pod key -> seconds since the hub's
    last activity of the server (None or absent: none on record). ``gpu``: pod key -> its
    reading (None: no Prometheus configured; a key absent from it is not known).
    ``warnings``: those in force (the previous plan's). ``stopping``: servers being
    stopped now (they still hold their slice; they serve places, they are not chosen).
    """
    view = state.snapshot()
    places = list(places)
    exempt = frozenset(exempt)
    stopping = frozenset(stopping)
    candidates = _candidates(policy, view, activity, gpu, exempt, now, gpu_below)
    kept: dict[str, Warned] = {}
    warned: list[Warned] = []
    stops: list[Stop] = []
    taken: set[str] = set(stopping)

    def warn(c: Candidate, reason: str, why: str, place: Place | None = None) -> None:
        earlier = warnings.get(c.key)
        if earlier is not None and earlier.reason == reason and earlier.uid == c.pod.uid:
            if now >= earlier.deadline:
                for_key = place.key if place is not None else ""
                stops.append(Stop(earlier, _detail(policy, earlier, why, place), for_key))
            else:
                kept[c.key] = earlier
            return
        new = Warned(
            c.key,
            c.pod.user or "",
            c.pod.server_name,
            c.tier.slug,
            c.tier.display_name,
            c.pod.profile,
            reason,
            now,
            now + c.tier.reclaim.grace,
            why,
            place.key if place is not None else "",
            c.pod.uid,
        )
        kept[c.key] = new
        warned.append(new)

    for c in candidates:  # max_session: whatever the line and the activity
        if c.over_time and not c.exempt and c.key not in stopping:
            limit = c.tier.reclaim.max_session
            why = f"running {duration(c.age)} ({c.tier.display_name} allows {duration(limit)})"
            warn(c, MAX_SESSION, why)
            taken.add(c.key)

    # Over-time servers go first: stopping anyway within their grace, they serve the
    # places they can before any idle server is warned for them.
    served = _served_by_stopping(policy, view, places, candidates, taken)
    for place in places:
        if place.key in served:
            continue
        options = [
            c
            for c in candidates
            if c.reclaimable and c.key not in taken and _helps(policy, view, place, c)
        ]
        if not options:
            continue
        best = min(options, key=lambda c: _rank(c, warnings))
        taken.add(best.key)
        warn(best, IDLE, best.idleness.shown, place)

    withdrawn = tuple(
        (w, _why_withdrawn(w, candidates, exempt))
        for key, w in warnings.items()
        if key not in kept and key not in {s.key for s in stops}
    )
    return Plan(kept, tuple(warned), withdrawn, tuple(stops), tuple(candidates))


def _candidates(policy, view, activity, gpu, exempt, now, gpu_below) -> list[Candidate]:
    out = []
    for pod in view.pods.values():
        if not pod.managed or not pod.slot or not pod.tier:
            continue
        tier = policy.tier(pod.tier)
        if tier is None:
            continue
        reading = None if gpu is None else gpu.get(pod.key, _NO_SERIES)
        age = _age(pod.created, now)
        hub_idle = activity.get(pod.key)
        if hub_idle is not None and age is not None:  # not idle before its pod existed
            hub_idle = min(hub_idle, age)  # (JupyterHub stamps activity as a start begins)
        idleness = judge(
            hub_idle,
            reading,
            idle_after_s=idle_window(tier),
            gpu_below=gpu_below,
        )
        out.append(Candidate(pod, tier, idleness, age, (pod.user or "") in exempt))
    out.sort(key=lambda c: c.key)
    return out


_NO_SERIES = GpuReading(problem="no GPU series for it")


def idle_window(tier: Tier) -> float:
    """The seconds without activity after which a server of ``tier`` reads as idle: its
    ``reclaim.idle_after``, else :data:`DEFAULT_IDLE_AFTER` (shown, never reclaimed)."""
    rules = tier.reclaim
    return rules.idle_after if rules is not None and rules.idle_after else DEFAULT_IDLE_AFTER


def _rank(c: Candidate, warnings: Mapping[str, Warned]) -> tuple:
    already = warnings.get(c.key)
    hub_idle = c.idleness.hub_idle_s or 0.0
    return (
        not (already is not None and already.reason == IDLE and already.uid == c.pod.uid),
        not c.borrower,
        -hub_idle,
        c.key,
    )


def _helps(policy: Policy, view: Snapshot, place: Place, c: Candidate) -> bool:
    """Whether stopping ``c`` would free a slice ``place``'s spawn could be granted."""
    tier = policy.tier(place.tier)
    if tier is None or (c.pod.user == place.user and c.pod.server_name == place.server_name):
        return False
    reach = tier_reach(tier, view)
    resources = [r for r in c.pod.requests if (c.pod.slot, r) in reach]
    if not resources:
        return False
    chain = tier_chain(tier, view)
    kinds = {kind.resource: kind for step in chain for kind in step}
    kind = kinds.get(resources[0])
    if kind is None:
        return False
    if policy.charge == "requested" and chain and chain[0]:
        kind = chain[0][0]
    team = place.team or None
    scopes = tuple(policy.teams_for(place.groups)) or ("",)
    usage = view.usage(place.team, place.user, scopes)
    same_user = c.pod.user == place.user
    # the stop gives the scope its slice back: a team's, or (no team) the user's own
    if c.pod.team == place.team and (place.team or same_user):
        usage = released(usage, c.pod.charge, same_user=same_user)
    check = check_quota(policy.quota_for(team), usage, Charge(kind.compute_slices, kind.memory_gb))
    return check.ok


def _served_by_stopping(policy, view, places, candidates, stopping) -> set[str]:
    """Places a server already stopping will serve: each stopping server the first it helps."""
    served: set[str] = set()
    by_key = {c.key: c for c in candidates}
    for key in sorted(stopping):
        c = by_key.get(key)
        if c is None:
            continue
        for place in places:
            if place.key not in served and _helps(policy, view, place, c):
                served.add(place.key)
                break
    return served


def _detail(policy: Policy, w: Warned, why_now: str, place: Place | None) -> str:
    """For the log line and the metric's reason: why now, for whom, since when."""
    warned = f"warned at {clock(w.warned_at)}"
    if w.reason == MAX_SESSION or place is None:
        return f"{why_now}; {warned}"
    tier = policy.tier(place.tier)
    wants = tier.display_name if tier is not None else place.tier
    return f"{why_now}; for {place.user}'s {wants} waiting in line; {warned}"


def _why_withdrawn(w: Warned, candidates: list[Candidate], exempt: frozenset[str]) -> str:
    c = next((c for c in candidates if c.key == w.key), None)
    if c is None:
        return "the server stopped"
    if c.exempt or w.user in exempt:
        return "its user is exempt"
    if w.reason == MAX_SESSION:
        return "the tier's max_session no longer applies"
    if not c.idleness.idle:
        return c.idleness.reason
    if not c.reclaimable:
        return "its tier no longer reclaims idle servers"
    return "no one waits for its slice any more"


def _age(created: str, now: float) -> float | None:
    stamp = unix_seconds(created)
    return max(now - stamp, 0.0) if stamp is not None else None


def clock(ts: float) -> str:
    """14:05 UTC."""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%H:%M UTC")
