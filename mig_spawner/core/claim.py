"""A spawn's claim: one immutable record per spawn, moved by named transitions.

A claim is made when a start begins (:meth:`Claim.request_for`) and says, at every moment,
where the spawn stands::

    requested -decide-> decided -reserve-> reserved -pin-> pinned -bind-> bound
        |                  `------- pin (a CPU profile) ------^   (pin again: moved)
        |-wait-> waiting -decide-> decided
        |           `-refuse-> refused
        `-refuse-> refused
    release: requested, waiting, decided, reserved, pinned, bound -> released

Every transition returns a new Claim; one that the state diagram does not allow raises
:class:`IllegalTransition` naming both states. The spawner holds its current claim in
one attribute and saves it with its state (:meth:`to_state` / :meth:`from_state`), so a
hub restart rebuilds the claim of a running server.

What the user *asked* stays in :attr:`Claim.request`, untouched; what they were *given*
is :attr:`Claim.grant` -- the record the REST model, the admin page, the pod's
environment and the metrics all read (:meth:`Claim.record`, :meth:`Claim.environment`,
:meth:`Claim.shown_options`). When it happened is in :attr:`Claim.requested_at`,
``decided_at``, ``bound_at`` and ``ended_at`` (Unix seconds): core has no clock, so the
shell passes ``now`` to each transition; the times are saved with the claim, and the demand
record of an ended claim is built from them (:func:`mig_spawner.core.demand.claim_record`).
Pure: standard library and core only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

REQUESTED, WAITING, DECIDED, RESERVED = "requested", "waiting", "decided", "reserved"
PINNED, BOUND, RELEASED, REFUSED = "pinned", "bound", "released", "refused"
STATES = (REQUESTED, WAITING, DECIDED, RESERVED, PINNED, BOUND, RELEASED, REFUSED)

#: state -> the states a transition may move it to
MOVES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        REQUESTED: frozenset({WAITING, DECIDED, REFUSED, RELEASED}),
        WAITING: frozenset({DECIDED, REFUSED, RELEASED}),
        DECIDED: frozenset({RESERVED, PINNED, RELEASED}),  # a CPU profile reserves nothing
        RESERVED: frozenset({PINNED, RELEASED}),
        PINNED: frozenset({PINNED, BOUND, RELEASED}),  # re-pinned when its reservation moved
        BOUND: frozenset({RELEASED}),
        RELEASED: frozenset(),
        REFUSED: frozenset(),
    }
)
#: states in which the claim may hold a slice and quota on the cluster cache
HOLDING = frozenset({RESERVED, PINNED, BOUND})

#: the key under which the grant is saved in the spawner's state and shown in user_options
RECORD_KEY = "mig"


class IllegalTransition(ValueError):
    """A transition the claim's state diagram does not allow."""


@dataclass(frozen=True)
class Claim:
    key: str  # the pod's "namespace/name"
    user: str
    server_name: str = ""
    #: the user's request, as asked (never rewritten)
    request: Mapping[str, Any] = field(default_factory=dict, compare=False)
    state: str = REQUESTED
    #: what was granted: the record (profile, tier, slice, gpu, node, team, ...) or None
    grant: Mapping[str, Any] | None = None
    node: str | None = None  # where its pod is (to be) pinned
    #: the decision that granted or refused it (kept in memory only, not saved)
    decision: Any = field(default=None, compare=False, repr=False)
    reason: str = ""  # why it was refused, is waiting, or was released
    #: when it was requested, decided (admitted or refused), bound (its server ran) and
    #: ended (refused or released): Unix seconds passed in by the shell, None if not (yet)
    requested_at: float | None = None
    decided_at: float | None = None
    bound_at: float | None = None
    ended_at: float | None = None

    # ------------------------------------------------------------ transitions

    @classmethod
    def request_for(
        cls,
        key: str,
        user: str,
        server_name: str,
        request: Mapping[str, Any],
        now: float | None = None,
    ) -> Claim:
        """The one place a claim is made: a start begins with what the user asked
        (``now``: when it was asked; a start that retries elsewhere passes its first)."""
        asked = {k: v for k, v in dict(request or {}).items() if k != RECORD_KEY}
        return cls(key, user, server_name, MappingProxyType(asked), requested_at=now)

    def _move(self, to: str, **changes: Any) -> Claim:
        if to not in MOVES[self.state]:
            raise IllegalTransition(
                f"claim {self.key}: cannot go from {self.state} to {to}"
                f" (from {self.state}: {', '.join(sorted(MOVES[self.state])) or 'none'})"
            )
        return replace(self, state=to, **changes)

    def wait(self, reason: str) -> Claim:
        """Queued: decided later (the waiting line)."""
        return self._move(WAITING, reason=reason)

    def decide(
        self, grant: Mapping[str, Any], decision: Any = None, now: float | None = None
    ) -> Claim:
        """Admitted: ``grant`` is the record of what it gets."""
        return self._move(
            DECIDED,
            grant=MappingProxyType(dict(grant)),
            node=grant.get("node"),
            decision=decision,
            decided_at=now,
        )

    def refuse(self, reason: str, decision: Any = None, now: float | None = None) -> Claim:
        return self._move(REFUSED, reason=reason, decision=decision, decided_at=now, ended_at=now)

    def reserve(self) -> Claim:
        """Its slice and quota are assumed on the cluster cache."""
        return self._move(RESERVED)

    def pin(self, node: str | None = None) -> Claim:
        """Its pod is created (for a GPU, pinned to ``node``)."""
        node = node or self.node
        grant = self.grant
        if grant is not None and node and grant.get("node") and grant.get("node") != node:
            grant = MappingProxyType({**grant, "node": node})  # its reservation moved
        return self._move(PINNED, node=node, grant=grant)

    def bind(self, now: float | None = None) -> Claim:
        """Its server runs."""
        return self._move(BOUND, bound_at=now)

    def release(self, reason: str, now: float | None = None) -> Claim:
        return self._move(RELEASED, reason=reason, ended_at=now)

    # ------------------------------------------------------------ reads

    @property
    def holds(self) -> bool:
        """May it hold a slice and quota on the cache (to be given back when it ends)?"""
        return self.state in HOLDING and self.gpu

    @property
    def gpu(self) -> bool:
        return bool(self.grant and self.grant.get("gpu"))

    @property
    def ended(self) -> bool:
        return self.state in (RELEASED, REFUSED)

    def record(self) -> dict[str, Any] | None:
        """What this server got (saved in the state, shown under ``user_options["mig"]``)."""
        return dict(self.grant) if self.grant is not None else None

    def shown_options(self) -> dict[str, Any]:
        """The request as the hub shows it while the server runs: plus what it got.

        JupyterHub's REST model and admin page read ``user_options``; its ``"profile"``
        names the slice, and ``"mig"`` holds the record.
        """
        shown = dict(self.request)
        record = self.record()
        if record is None or self.ended:
            return shown
        shown[RECORD_KEY] = record
        if record.get("slice"):
            fallback = f" (fallback from {record['requested']})" if record.get("fallback") else ""
            shown["profile"] = (
                f"{record['profile']}: {record['slice']} on {record['gpu']}{fallback}"
            )
        return shown

    def asked_options(self) -> dict[str, Any]:
        """The request as the spawn form pre-selects it again: with the profile it named
        (a REST request may name only a tier)."""
        asked = dict(self.request)
        if self.grant is not None and self.grant.get("profile"):
            asked["profile"] = self.grant["profile"]
        return asked

    def environment(self) -> dict[str, str]:
        """The pod's ``MIG_SPAWNER_*`` variables."""
        record = self.grant or {}
        env = {
            "MIG_SPAWNER_PROFILE": record.get("profile") or "",
            "MIG_SPAWNER_TIER": record.get("tier") or "",
            "MIG_SPAWNER_SLICE": record.get("slice") or "",
            "MIG_SPAWNER_RESOURCE": record.get("resource") or "",
            "MIG_SPAWNER_GPU": record.get("gpu") or "",
            "MIG_SPAWNER_NODE": record.get("node") or "",
            "MIG_SPAWNER_TEAM": record.get("team") or "",
            "MIG_SPAWNER_FALLBACK": "true" if record.get("fallback") else "false",
        }
        # Braces would be taken for KubeSpawner template fields: keep them out.
        return {k: v.replace("{", "(").replace("}", ")") for k, v in env.items()}

    # ------------------------------------------------------------ saved state

    def to_state(self) -> dict[str, Any]:
        """What the spawner's ``get_state`` saves (JSON)."""
        return {
            "key": self.key,
            "user": self.user,
            "server_name": self.server_name,
            "request": dict(self.request),
            "state": self.state,
            "node": self.node,
            "requested_at": self.requested_at,
            "decided_at": self.decided_at,
            "bound_at": self.bound_at,
        }

    @classmethod
    def from_state(cls, saved: Mapping[str, Any], record: Mapping[str, Any] | None) -> Claim:
        """A running server's claim after a hub restart, from its saved state.

        The hub only saves the state of a started server, so the claim is bound; its pod
        carries the same facts on its annotations, which the cache reads for quotas.
        Raises ValueError for a saved state that is not a claim's.
        """
        if not isinstance(saved, Mapping) or not isinstance(saved.get("key"), str):
            raise ValueError(f"not a saved claim: {saved!r}")
        request = saved.get("request") if isinstance(saved.get("request"), Mapping) else {}
        grant = MappingProxyType(dict(record)) if isinstance(record, Mapping) else None
        return cls(
            key=saved["key"],
            user=str(saved.get("user") or ""),
            server_name=str(saved.get("server_name") or ""),
            request=MappingProxyType(dict(request)),
            state=BOUND,
            grant=grant,
            node=saved.get("node") if isinstance(saved.get("node"), str) else None,
            requested_at=_time(saved.get("requested_at")),
            decided_at=_time(saved.get("decided_at")),
            bound_at=_time(saved.get("bound_at")),
        )


def _time(value: Any) -> float | None:
    """A saved time, or None (an older hub saved none; a garbled one is dropped)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def grant_record(profile: str | None, decision: Any = None, tier_name: str = "") -> dict[str, Any]:
    """The record of a grant: a CPU profile's (``decision`` None) or an admitted decision's."""
    if decision is None:
        return {"profile": profile, "gpu": None}
    return {
        "profile": profile,
        "tier": decision.tier,
        "tier_name": tier_name,
        "slice": decision.granted.profile,
        "resource": decision.granted.resource,
        "gpu": decision.granted.gpu_name,
        "product": decision.granted.product,
        "node": decision.node,
        "team": decision.team,
        "fallback": decision.fallback,
        "requested": decision.requested.profile,
    }
