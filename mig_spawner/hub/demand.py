"""The hub's demand record: one per claim end, logged and optionally appended to a file.

The spawner calls :func:`claim_ended` each time its claim ends -- refused by a decision,
or released when its server stops or its start fails (a start retried on another node
does not end the spawn's demand). The record is built from the claim alone
(:func:`mig_spawner.core.demand.claim_record`): its times are saved with it, so a server
that ran across a hub restart is still recorded as served when it stops. ``mig-spawner
demand`` reads the lines back from the hub's log, ``mig-spawner advise`` replays them.
Writing never raises: a file that cannot be written is logged once per error and skipped.
"""

from __future__ import annotations

from typing import Any

from traitlets import Unicode

from ..core.claim import Claim
from ..core.demand import MARKER, claim_record, record_line


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


def claim_ended(spawner: Any, claim: Claim) -> None:
    """Log (and append to ``demand_log_file``) the record of ``claim``, which just ended;
    nothing for a claim with no GPU demand (a CPU profile, a refusal before a decision)."""
    record = claim_record(claim)
    if record is None:
        return
    line = record_line(record)
    spawner.log.info(line)
    path = getattr(spawner, "demand_log_file", None)
    if path:
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(line[len(MARKER) :] + "\n")
        except OSError as e:
            spawner.log.warning("Cannot append to demand_log_file %s: %s", path, e)


__all__ = ["claim_ended", "log_file_trait"]
