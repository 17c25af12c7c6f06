"""The waiting line as the cluster keeps it: the persisted document, read back and summed up.

The hub's line (``hub/waiting.py``) writes one JSON document, version 1, to the ConfigMap
``mig-spawner-line-<hub_id>`` in the hub's namespace, key ``line.json``
(:mod:`mig_spawner.hub.linestore`)::

    {"version": 1, "hub": "jupyterhub", "saved_at": 1765000000.0,
     "places": [{"key": "ns/jupyter-bob", "user": "bob", "server_name": "", "tier": "notebook",
                 "team": "vision", "groups": ["vision"], "requested_at": 1765.0,
                 "deadline": 1767.0, "position": 2, "eta_seconds": 360.0}],
     "history": {"notebook": [3600.0, 1800.5]}}

This module is the pure part: :func:`parse_document` / :func:`parse_configmap` check it and
raise one :class:`~mig_spawner.core.errors.InputError` naming the bad key (a garbled or
foreign ConfigMap), :func:`kept_places` turns the places saved before a hub restart into
the places kept for a re-request, :func:`restart_message` is what such a user reads, and
:func:`summary` the per-tier rows (waiting count, positions, ETA) that the admin page, the
figures endpoint and ``mig-spawner status`` show. No clock: callers pass ``now``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InputError, snippet

VERSION = 1
#: The ConfigMap's key that holds the document.
KEY = "line.json"
#: Where an unreadable document (or a foreign ConfigMap's data) is kept when the hub writes
#: its own over it: nothing an admin put there is lost.
REJECTED_KEY = "line.rejected.json"
NAME_PREFIX = "mig-spawner-line-"
#: Session lengths kept per tier (the newest last).
HISTORY_LIMIT = 500
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def configmap_name(hub_id: str) -> str:
    """``mig-spawner-line-<hub_id>``; an InputError when that is no valid object name."""
    name = NAME_PREFIX + str(hub_id)
    if len(name) > 253 or not _NAME.match(name):
        raise InputError(
            f"MIGSpawner.hub_id {hub_id!r} gives the line's ConfigMap the name {name!r}, "
            "which Kubernetes does not accept",
            path=("MIGSpawner", "hub_id"),
            expected="lower-case letters, digits, '-' and '.' (at most 236 characters)",
        )
    return name


@dataclass(frozen=True)
class SavedPlace:
    """One place of the saved line (the persisted ``places`` entry)."""

    key: str
    user: str
    server_name: str
    tier: str
    team: str
    groups: tuple[str, ...]
    requested_at: float
    deadline: float
    position: int
    eta_seconds: float | None


@dataclass(frozen=True)
class LineDoc:
    """A checked document: ``places`` in the saved order, ``history`` tier -> lengths."""

    hub: str
    saved_at: float
    places: tuple[SavedPlace, ...]
    history: Mapping[str, tuple[float, ...]]


def empty(hub: str = "", saved_at: float = 0.0) -> LineDoc:
    return LineDoc(hub=hub, saved_at=saved_at, places=(), history={})


# --------------------------------------------------------------------------- parsing


def _bad(message: str, path: tuple, expected: str | None = None) -> InputError:
    return InputError(message, path=path, expected=expected)


def _where(path: tuple) -> str:
    out = ""
    for item in path:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out or "the document"


def _number(value: Any, path: tuple, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        raise _bad(
            f"{_where(path)} is {json.dumps(value)[:40]}, not a number",
            path,
            "a finite number" + (" or null" if allow_none else ""),
        )
    return float(value)


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float (JSON allows any digits)
        return False


def _text(value: Any, path: tuple) -> str:
    if not isinstance(value, str):
        raise _bad(f"{_where(path)} is {json.dumps(value)[:40]}, not a string", path, "a string")
    return value


_PLACE_FIELDS = (
    "key",
    "user",
    "server_name",
    "tier",
    "team",
    "groups",
    "requested_at",
    "deadline",
    "position",
    "eta_seconds",
)


def _place(raw: Any, path: tuple) -> SavedPlace:
    if not isinstance(raw, Mapping):
        raise _bad(f"{_where(path)} is not an object", path, "a place object")
    missing = [f for f in _PLACE_FIELDS if f not in raw]
    if missing:
        raise _bad(f"{_where(path)} has no {', '.join(missing)}", path, "every field of a place")
    groups = raw["groups"]
    if not isinstance(groups, list):
        raise _bad(f"{_where((*path, 'groups'))} is not a list", (*path, "groups"), "a list")
    position = raw["position"]
    if isinstance(position, bool) or not isinstance(position, int) or position < 1:
        raise _bad(
            f"{_where((*path, 'position'))} is {json.dumps(position)[:40]}",
            (*path, "position"),
            "a whole number >= 1",
        )
    return SavedPlace(
        key=_text(raw["key"], (*path, "key")),
        user=_text(raw["user"], (*path, "user")),
        server_name=_text(raw["server_name"], (*path, "server_name")),
        tier=_text(raw["tier"], (*path, "tier")),
        team=_text(raw["team"], (*path, "team")),
        groups=tuple(_text(g, (*path, "groups", i)) for i, g in enumerate(groups)),
        requested_at=_number(raw["requested_at"], (*path, "requested_at")),
        deadline=_number(raw["deadline"], (*path, "deadline")),
        position=position,
        eta_seconds=_number(raw["eta_seconds"], (*path, "eta_seconds"), allow_none=True),
    )


def parse_document(data: Any, *, hub: str | None = None) -> LineDoc:
    """Check a decoded document (or its JSON text) and return it as a :class:`LineDoc`.

    ``hub``: the reading hub's id; a document another hub saved is refused. Raises an
    :class:`InputError` whose path names the bad key (``places[0].requested_at``).
    """
    if isinstance(data, str | bytes):
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        try:
            data = json.loads(text)
        except ValueError as e:
            line, col = getattr(e, "lineno", 0), getattr(e, "colno", 0)
            raise InputError(
                f"not JSON: {getattr(e, 'msg', e)} (line {line}, column {col})",
                expected="the line's JSON document, version 1",
                detail=snippet(text, line, col),
            ) from None
    if not isinstance(data, Mapping):
        raise _bad("the document is not a JSON object", (), "a JSON object")
    version = data.get("version")
    if version != VERSION:
        raise _bad(
            f"version is {json.dumps(version)[:40]}: not a line document this hub reads",
            ("version",),
            f"{VERSION}",
        )
    doc_hub = _text(data.get("hub"), ("hub",))
    if hub is not None and doc_hub != hub:
        raise _bad(
            f"hub is {doc_hub!r}: another hub's line (this hub is {hub!r})", ("hub",), repr(hub)
        )
    saved_at = _number(data.get("saved_at"), ("saved_at",))
    places = data.get("places")
    if not isinstance(places, list):
        raise _bad("places is not a list", ("places",), "a list of places")
    parsed = tuple(_place(p, ("places", i)) for i, p in enumerate(places))
    keys = [p.key for p in parsed]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise _bad(f"places holds {dup!r} twice", ("places",), "one place per server")
    history = data.get("history", {})
    if not isinstance(history, Mapping):
        raise _bad("history is not an object", ("history",), "tier -> list of seconds")
    lengths: dict[str, tuple[float, ...]] = {}
    for tier, values in history.items():
        if not isinstance(values, list):
            raise _bad(f"history.{tier} is not a list", ("history", tier), "a list of seconds")
        got = [_number(v, ("history", tier, i)) for i, v in enumerate(values)]
        if any(v < 0 for v in got):
            raise _bad(f"history.{tier} holds a negative length", ("history", tier), ">= 0")
        lengths[str(tier)] = tuple(got[-HISTORY_LIMIT:])
    return LineDoc(hub=doc_hub, saved_at=saved_at, places=parsed, history=lengths)


def parse_configmap(configmap: Any, hub: str) -> LineDoc:
    """The line document of the ConfigMap ``mig-spawner-line-<hub>`` as the API returns it.

    An InputError located at ``ConfigMap <namespace>/<name> key line.json`` when the
    ConfigMap is not one this hub wrote (no ``line.json``) or the document is bad.
    """
    meta = configmap.get("metadata") if isinstance(configmap, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    where = f"ConfigMap {meta.get('namespace', '?')}/{meta.get('name', configmap_name(hub))}"
    data = configmap.get("data") if isinstance(configmap, Mapping) else None
    if not isinstance(data, Mapping) or KEY not in data:
        keys = ", ".join(sorted(map(str, data or {}))) or "none"
        raise InputError(
            f"has no key {KEY} (its keys: {keys}): not a line this hub saved",
            path=("data", KEY),
            expected="the ConfigMap mig-spawner writes",
        ).at(where)
    try:
        return parse_document(data[KEY], hub=hub)
    except InputError as e:
        raise e.within("data", KEY).at(f"{where} key {KEY}") from None


def configmap_body(
    doc: Mapping[str, Any],
    *,
    hub: str,
    namespace: str,
    keep: Mapping[str, str] | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """The ConfigMap to write for ``doc``. ``keep``: other data keys to carry along (what
    was there when the hub could not read it, under :data:`REJECTED_KEY`)."""
    data = {k: str(v) for k, v in (keep or {}).items() if k != KEY}
    data[KEY] = text if text is not None else encoded(doc)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(hub),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "mig-spawner",
                "app.kubernetes.io/component": "line",
            },
            "annotations": {"mig-spawner/hub": hub},
        },
        "data": data,
    }


#: What a ConfigMap's data may hold in all (the API server refuses more with 422).
CONFIGMAP_MAX_BYTES = 1024 * 1024


def encoded(doc: Mapping[str, Any]) -> str:
    """The document as it is stored (compact, keys sorted)."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def fit(doc: Mapping[str, Any], max_bytes: int) -> tuple[Mapping[str, Any], str] | None:
    """(``doc``, its text) within ``max_bytes``: the oldest session lengths dropped first,
    each tier's halved until it fits; None when the places alone do not fit (some 4,000
    places: the line's hub-wide cap should stay below that)."""
    out: Mapping[str, Any] = doc
    text = encoded(out)
    history = {t: list(v) for t, v in (doc.get("history") or {}).items()}
    while len(text.encode("utf-8")) > max_bytes:
        if not any(history.values()):
            return None
        history = {t: v[len(v) // 2 :] if len(v) > 1 else [] for t, v in history.items()}
        out = {**doc, "history": history}
        text = encoded(out)
    return out, text  # ``doc`` itself when nothing was dropped


def rejected_data(configmap: Any) -> dict[str, str]:
    """What to keep of a ConfigMap the hub could not read: its data, ``line.json`` moved to
    :data:`REJECTED_KEY` (so the next save keeps it beside the hub's own document)."""
    data = configmap.get("data") if isinstance(configmap, Mapping) else None
    if not isinstance(data, Mapping):
        return {}
    out = {str(k): str(v) for k, v in data.items() if k != KEY}
    if KEY in data:
        out[REJECTED_KEY] = str(data[KEY])
    return out


# --------------------------------------------------------------------------- restart


@dataclass(frozen=True)
class KeptPlace:
    """A place saved before a hub restart, kept for a re-request until ``until``."""

    requested_at: float
    position: int
    until: float
    tier: str


def kept_places(doc: LineDoc, now: float, grace_seconds: float) -> dict[str, KeptPlace]:
    """The places of ``doc`` kept after a restart at ``now``, by pod key: each for
    ``grace_seconds`` from now, none whose ``max_wait`` ran out (``deadline <= now``)."""
    if grace_seconds <= 0:
        return {}
    until = now + grace_seconds
    return {
        p.key: KeptPlace(p.requested_at, p.position, until, p.tier)
        for p in doc.places
        if p.deadline > now
    }


def restart_message(kept: KeptPlace, now: float) -> str:
    """``the hub restarted: your place (#2) is kept for 10 min - press Start``."""
    minutes = max(1, math.ceil((kept.until - now) / 60 - 1e-9))
    return (
        f"the hub restarted: your place (#{kept.position}) is kept for {minutes} min - press Start"
    )


def restart_notice(kept: Mapping[str, KeptPlace], key: str, now: float) -> str:
    """The spawn form's line for the server ``key`` (``namespace/pod``): the restart
    message while its place is kept, else ""."""
    place = kept.get(key)
    if place is None or place.until <= now:
        return ""
    return restart_message(place, now)


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class TierLine:
    """One tier's line: how many wait, each place (by position) and the head's ETA."""

    tier: str
    waiting: int
    places: tuple[SavedPlace, ...]

    @property
    def head_eta(self) -> float | None:
        return self.places[0].eta_seconds if self.places else None


def summary(doc: LineDoc, tiers: list[str] | tuple[str, ...] = ()) -> list[TierLine]:
    """Per tier, its places by position: the tiers in ``tiers`` order (the policy's), then
    any other tier that has places (a tier since removed), by name."""
    by_tier: dict[str, list[SavedPlace]] = {}
    for place in doc.places:
        by_tier.setdefault(place.tier, []).append(place)
    order = [t for t in tiers if t in by_tier] + sorted(set(by_tier) - set(tiers))
    return [
        TierLine(t, len(by_tier[t]), tuple(sorted(by_tier[t], key=lambda p: (p.position, p.key))))
        for t in order
    ]


def waiting_counts(doc: LineDoc, tiers: list[str] | tuple[str, ...] = ()) -> dict[str, int]:
    """tier -> how many wait (every tier in ``tiers``, 0 when none)."""
    counts = {t: 0 for t in tiers}
    for place in doc.places:
        counts[place.tier] = counts.get(place.tier, 0) + 1
    return counts


def eta_text(seconds: float | None) -> str:
    """``about 6 min`` / ``time unknown`` (the wording of the progress messages)."""
    if seconds is None:
        return "time unknown"
    return f"about {max(1, round(seconds / 60))} min"


def summary_dict(doc: LineDoc, now: float, tiers: list[str] | tuple[str, ...] = ()) -> dict:
    """The JSON form (``status --json``, the admin page's data): per tier, count and places."""
    return {
        "saved_at": doc.saved_at,
        "tiers": [
            {
                "tier": row.tier,
                "waiting": row.waiting,
                "head_eta_seconds": row.head_eta,
                "places": [
                    {
                        "position": p.position,
                        "user": p.user,
                        "server": p.server_name,
                        "team": p.team or None,
                        "waited_seconds": round(max(0.0, now - p.requested_at), 1),
                        "eta_seconds": p.eta_seconds,
                    }
                    for p in row.places
                ],
            }
            for row in summary(doc, tiers)
        ],
    }
