"""The waiting line: spawns that could not start for capacity, in the order they are served.

Pure: no clock, no I/O. The shell (:mod:`mig_spawner.hub.waiting`) passes the times and
the GPU servers running per team.

The order (:meth:`Line.order`) is a function of the places and ``running`` alone:

1. the team with fewer GPU servers running goes first (its members have less now, so a
   freed slice helps the team that has least; a team cannot starve another by queueing
   many requests);
2. within a team, first come, first served: by ``requested_at``, then by key (a stable
   tie-break);
3. between the first-come places of teams running as many, the narrower tier first
   (``narrowness``: how many slices the tier could use, :func:`mig_spawner.core.reach.narrowness`,
   the rule that keeps narrow tiers servable), then first come, first served.

The order is a merge of the teams' first-come queues: at each step the heads of the
teams' queues compete by (running, narrowness, requested_at, key). With no narrowness
known (or equal), that is simply: fewer running first, then first come, first served.

The team is the one the spawn would be charged to (``""``: a user of the default quota;
they count as one team here). One place per server: the key is the pod's
``namespace/name``. A place's *position* is its 1-based rank among the places of the same
tier (what its user is told: ``#2 in line``).

:meth:`Line.to_dict` / :meth:`Line.from_dict` read and write the persisted document
(version 1) that the hub saves in a ConfigMap.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: version of the persisted document
VERSION = 1
#: at most this many session lengths are kept per tier (newest last)
HISTORY_LIMIT = 500


@dataclass(frozen=True)
class Place:
    key: str  # the pod key "namespace/pod-name": one place per server
    user: str
    server_name: str
    tier: str  # tier slug
    team: str  # the team it would charge ("" = none / default quota)
    groups: tuple[str, ...]
    requested_at: float  # Unix seconds: FIFO key (kept across a hub restart)
    deadline: float  # Unix seconds: when max_wait runs out

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "user": self.user,
            "server_name": self.server_name,
            "tier": self.tier,
            "team": self.team,
            "groups": list(self.groups),
            "requested_at": self.requested_at,
            "deadline": self.deadline,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "place") -> Place:
        """A place from its document entry; ValueError naming ``where`` and the field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} must be a mapping, not {type(data).__name__}")
        text = {}
        for name in ("key", "user", "server_name", "tier", "team"):
            value = data.get(name, "" if name in ("server_name", "team") else None)
            if not isinstance(value, str) or (name in ("key", "user", "tier") and not value):
                raise ValueError(f"{where}.{name} must be a non-empty string, not {value!r}")
            text[name] = value
        groups = data.get("groups", [])
        if not isinstance(groups, list | tuple) or not all(isinstance(g, str) for g in groups):
            raise ValueError(f"{where}.groups must be a list of group names, not {groups!r}")
        times = {
            name: _seconds(data.get(name), f"{where}.{name}")
            for name in ("requested_at", "deadline")
        }
        return cls(groups=tuple(groups), **text, **times)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where} must be a number of Unix seconds, not {value!r}")
    return float(value)


def _merged(
    places: Iterable[Place], running: Mapping[str, int], narrowness: Mapping[str, int]
) -> list[Place]:
    """Every team's queue first come, first served; the heads compete by
    (running, narrowness, requested_at, key): O(n log n)."""
    queues: dict[str, list[Place]] = {}
    for place in sorted(places, key=lambda p: (p.requested_at, p.key)):
        queues.setdefault(place.team, []).append(place)

    def head_key(team: str, i: int) -> tuple:
        p = queues[team][i]
        return (running.get(team, 0), narrowness.get(p.tier, 0), p.requested_at, p.key, team, i)

    heads = [head_key(team, 0) for team in queues]
    heapq.heapify(heads)
    out: list[Place] = []
    while heads:
        *_, team, i = heapq.heappop(heads)
        out.append(queues[team][i])
        if i + 1 < len(queues[team]):
            heapq.heappush(heads, head_key(team, i + 1))
    return out


class Line:
    """The places waiting, one per server key. Mutable container; every read is pure."""

    def __init__(self, places: Iterable[Place] = (), running: Mapping[str, int] | None = None):
        self._places: dict[str, Place] = {}
        #: GPU servers running per team (the shell keeps it current)
        self.running: dict[str, int] = dict(running or {})
        #: tier -> how many slices it could use (fewer: served first among equal teams)
        self.narrowness: dict[str, int] = {}
        self._order: list[Place] | None = None  # cached order; None: recompute
        #: (the order they were counted in, key -> position): one count per order
        self._positions: tuple[list[Place] | None, dict[str, int]] = (None, {})
        for place in places:
            self.add(place)

    # ------------------------------------------------------------ changes

    def add(self, place: Place) -> Place | None:
        """Take ``place``; it replaces (and returns) an earlier place of the same key."""
        earlier = self._places.get(place.key)
        self._places[place.key] = place
        self._order = None
        return earlier

    def remove(self, key: str) -> Place | None:
        place = self._places.pop(key, None)
        if place is not None:
            self._order = None
        return place

    def set_narrowness(self, narrowness: Mapping[str, int]) -> None:
        narrowness = dict(narrowness)
        if narrowness != self.narrowness:
            self.narrowness = narrowness
            self._order = None

    def set_running(self, running: Mapping[str, int]) -> None:
        running = {team: n for team, n in running.items() if n}
        if running != self.running:
            self.running = running
            self._order = None

    # ------------------------------------------------------------ reads

    def __len__(self) -> int:
        return len(self._places)

    def __contains__(self, key: object) -> bool:
        return key in self._places

    def get(self, key: str) -> Place | None:
        return self._places.get(key)

    def places(self) -> list[Place]:
        """The places, in no particular order (cheap)."""
        return list(self._places.values())

    def order(self) -> list[Place]:
        """Every place, in the order they are served (cached until the line changes)."""
        return list(self._ordered())

    def _ordered(self) -> list[Place]:
        if self._order is None:
            self._order = _merged(self._places.values(), self.running, self.narrowness)
        return self._order

    def _counted(self) -> dict[str, int]:
        """Key -> position, counted once per order: every waiting spawn's progress reads
        its position after each change, so a count per read would cost O(n^2) a change."""
        order = self._ordered()
        if self._positions[0] is not order:
            counts: dict[str, int] = {}
            out = {}
            for place in order:
                counts[place.tier] = counts.get(place.tier, 0) + 1
                out[place.key] = counts[place.tier]
            self._positions = (order, out)
        return self._positions[1]

    def positions(self) -> dict[str, int]:
        """Key -> 1-based position among the places of its tier."""
        return dict(self._counted())

    def position(self, key: str) -> int | None:
        return self._counted().get(key)

    def lengths(self) -> dict[str, int]:
        """Tier -> how many wait for it."""
        out: dict[str, int] = {}
        for place in self._places.values():
            out[place.tier] = out.get(place.tier, 0) + 1
        return out

    def expired(self, now: float) -> list[Place]:
        """The places whose deadline has passed at ``now``, in line order."""
        return [p for p in self.order() if p.deadline <= now]

    # ------------------------------------------------------------ the document

    def to_dict(
        self,
        *,
        hub: str,
        saved_at: float,
        history: Mapping[str, Sequence[float]] | None = None,
        eta: Callable[[Place, int], float | None] | None = None,
    ) -> dict[str, Any]:
        """The persisted document (version 1): the places in line order, each with its
        position and ``eta(place, position)`` (None: unknown), and the session history."""
        positions = self.positions()
        places = []
        for place in self.order():
            entry = place.to_dict()
            entry["position"] = positions[place.key]
            entry["eta_seconds"] = eta(place, positions[place.key]) if eta else None
            places.append(entry)
        return {
            "version": VERSION,
            "hub": hub,
            "saved_at": saved_at,
            "places": places,
            "history": {
                tier: [float(x) for x in list(lengths)[-HISTORY_LIMIT:]]
                for tier, lengths in (history or {}).items()
            },
        }

    @classmethod
    def from_dict(cls, doc: Any) -> Line:
        """The line of a persisted document; ValueError naming what is wrong in it."""
        _check_doc(doc)
        return cls(Place.from_dict(entry, f"places[{i}]") for i, entry in enumerate(doc["places"]))


def _check_doc(doc: Any) -> None:
    if not isinstance(doc, Mapping):
        raise ValueError(f"a line document must be a mapping, not {type(doc).__name__}")
    if doc.get("version") != VERSION:
        raise ValueError(f"line document version {doc.get('version')!r}; expected {VERSION}")
    if not isinstance(doc.get("places", []), list):
        raise ValueError("places must be a list")


def history_from_dict(doc: Any) -> dict[str, list[float]]:
    """The session history of a persisted document (tier -> lengths, newest last)."""
    _check_doc(doc)
    history = doc.get("history") or {}
    if not isinstance(history, Mapping):
        raise ValueError("history must map tier slugs to lists of seconds")
    out: dict[str, list[float]] = {}
    for tier, lengths in history.items():
        if not isinstance(tier, str) or not isinstance(lengths, list):
            raise ValueError(f"history[{tier!r}] must be a list of seconds")
        out[tier] = [_seconds(x, f"history[{tier!r}][{i}]") for i, x in enumerate(lengths)][
            -HISTORY_LIMIT:
        ]
    return out


def add_history(history: dict[str, list[float]], tier: str, seconds: float) -> None:
    """Append one ended session's length to ``history[tier]``, keeping the newest 500."""
    lengths = history.setdefault(tier, [])
    lengths.append(float(seconds))
    if len(lengths) > HISTORY_LIMIT:
        del lengths[: len(lengths) - HISTORY_LIMIT]
