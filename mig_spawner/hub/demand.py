"""The hub's demand record: one per claim end, logged and optionally appended to a file.

The spawner calls three functions: :func:`decided` after each decision (a refusal ends the
claim at once), :func:`started` when the server runs, :func:`ended` when it stops or its
start fails. The record itself is built by :mod:`mig_spawner.core.demand`; ``mig-spawner
demand`` reads the lines back from the hub's log, ``mig-spawner advise`` replays them.
Writing never raises: a file that cannot be written is logged once per error and skipped.
"""

from __future__ import annotations

import time
from typing import Any

from traitlets import Unicode

from ..core import admission
from ..core.demand import ABANDONED, MARKER, REFUSED, SERVED, build_record, record_line

_ATTR = "_mig_claim"


def log_file_trait() -> Unicode:
    """``MIGSpawner.demand_log_file`` (defined here to keep the spawner's module small)."""
    return Unicode(
        None,
        allow_none=True,
        config=True,
        help="""
        A file to which the hub appends one JSON line per GPU claim when it ends: the
        tier and profile asked for, the profile and GPU model granted, the team, seconds
        waited and held, and the outcome (``served``, ``refused`` or ``abandoned``). The
        same record is always logged as one ``demand {...}`` line; ``mig-spawner demand``
        reads either back and ``mig-spawner advise --demand`` replays it to advise MIG
        layouts (docs: "Advise MIG layouts from demand"). Default: none (the log line only).
        """,
    )


def decided(spawner: Any, decision: admission.Decision) -> None:
    """Open (or, on a retry of the same start, update) the claim; a refusal ends it."""
    claim = getattr(spawner, _ATTR, None) or {"requested_at": time.time()}
    claim.update(
        tier=decision.tier,
        profile=decision.requested.profile if decision.requested else None,
        team=decision.team,
        user=spawner.user.name,
        granted=decision.granted.profile if decision.granted else None,
        gpu=decision.granted.product if decision.granted else None,
        code=decision.code,
    )
    setattr(spawner, _ATTR, claim)
    if not decision.admitted:
        claim.update(granted=None, gpu=None)
        ended(spawner, REFUSED)


def started(spawner: Any) -> None:
    claim = getattr(spawner, _ATTR, None)
    if claim is not None:
        claim.setdefault("started_at", time.time())


def ended(spawner: Any, outcome: str | None = None) -> None:
    """Close the claim: ``served`` if it ran, else ``abandoned`` (or the outcome given)."""
    claim = getattr(spawner, _ATTR, None)
    setattr(spawner, _ATTR, None)
    if claim is None or not claim.get("profile"):
        return  # no GPU claim (a CPU profile, no tiers) or already recorded
    if outcome is None:
        outcome = SERVED if "started_at" in claim else ABANDONED
    record = build_record(
        requested_at=claim["requested_at"],
        ended_at=time.time(),
        outcome=outcome,
        tier=claim["tier"],
        profile=claim["profile"],
        team=claim["team"],
        user=claim["user"],
        granted=claim["granted"],
        gpu=claim["gpu"],
        started_at=claim.get("started_at"),
        code=claim["code"],
    )
    line = record_line(record)
    spawner.log.info(line)
    path = getattr(spawner, "demand_log_file", None)
    if path:
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(line[len(MARKER) :] + "\n")
        except OSError as e:
            spawner.log.warning("Cannot append to demand_log_file %s: %s", path, e)


__all__ = ["ABANDONED", "REFUSED", "SERVED", "decided", "ended", "started"]
