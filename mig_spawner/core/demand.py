"""Demand records: one per claim end, written by the hub and read back by ``advise``.

Pure: building a record, its log line, and parsing lines back. A record is a JSON object:

- ``t``: when the request was made (Unix seconds);
- ``tier``, ``profile``: the tier asked for and its profile (the chain's first step);
- ``granted``, ``gpu``: the profile granted and its GPU model (``nvidia.com/gpu.product``),
  ``null`` when refused;
- ``team``, ``user``;
- ``waited_s``: request to running (or to the refusal/abandonment);
- ``held_s`` and ``duration_s``: how long the server held its slice (``null`` unless served);
- ``outcome``: ``served`` (ran, then stopped), ``refused`` (decision said no) or
  ``abandoned`` (admitted, but the start failed or was cancelled);
- ``code``: the decision code (``admitted``, ``capacity``, ``quota``, ...).

The hub writes ``demand {json}`` as one log line (and the bare JSON to a file, one a line).
Input accepted by :func:`parse_lines`: such log lines, bare JSON lines, and hand-written
records with at least ``t``, ``profile`` and ``duration_s`` (``team``, ``gpu``, ``tier``
optional). Anything else is skipped and counted, never fatal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .catalog import WHOLE_GPU, parse_profile_name
from .claim import REFUSED as CLAIM_REFUSED
from .claim import Claim

MARKER = "demand "
SERVED, REFUSED, ABANDONED = "served", "refused", "abandoned"
OUTCOMES = (SERVED, REFUSED, ABANDONED)


@dataclass(frozen=True)
class DemandRecord:
    t: float
    profile: str
    duration_s: float | None = None
    tier: str | None = None
    team: str | None = None
    user: str | None = None
    gpu: str | None = None
    granted: str | None = None
    waited_s: float = 0.0
    outcome: str = SERVED
    code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 3),
            "tier": self.tier,
            "profile": self.profile,
            "granted": self.granted,
            "gpu": self.gpu,
            "team": self.team,
            "user": self.user,
            "waited_s": round(self.waited_s, 3),
            "held_s": None if self.duration_s is None else round(self.duration_s, 3),
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "outcome": self.outcome,
            "code": self.code,
        }


def build_record(
    *,
    requested_at: float,
    ended_at: float,
    outcome: str,
    tier: str | None,
    profile: str,
    team: str | None = None,
    user: str | None = None,
    granted: str | None = None,
    gpu: str | None = None,
    started_at: float | None = None,
    code: str | None = None,
) -> DemandRecord:
    """The record of one claim that ended at ``ended_at`` (all times Unix seconds)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    running_from = started_at if started_at is not None else ended_at
    waited = max(running_from - requested_at, 0.0)
    held = max(ended_at - started_at, 0.0) if outcome == SERVED and started_at else None
    return DemandRecord(
        t=requested_at,
        profile=profile,
        duration_s=held,
        tier=tier,
        team=team or None,
        user=user or None,
        gpu=gpu or None,
        granted=granted or None,
        waited_s=waited,
        outcome=outcome,
        code=code,
    )


def claim_record(claim: Claim) -> DemandRecord | None:
    """The demand record of an ended claim: ``refused`` (the decision said no), ``served``
    (released after its server ran) or ``abandoned`` (released before). None for a claim
    that has not ended, asked no GPU tier (a CPU profile, a refusal before any decision),
    or lacks its times (saved by an older hub)."""
    if not claim.ended or claim.requested_at is None or claim.ended_at is None:
        return None
    decision = claim.decision
    if claim.state == CLAIM_REFUSED:
        if decision is None or decision.requested is None:
            return None
        return build_record(
            requested_at=claim.requested_at,
            ended_at=claim.ended_at,
            outcome=REFUSED,
            tier=decision.tier,
            profile=decision.requested.profile,
            team=decision.team,
            user=claim.user,
            code=decision.code,
        )
    grant = claim.grant or {}
    if not grant.get("requested"):
        return None  # a CPU profile: nothing on a GPU was claimed
    return build_record(
        requested_at=claim.requested_at,
        ended_at=claim.ended_at,
        outcome=SERVED if claim.bound_at is not None else ABANDONED,
        tier=grant.get("tier"),
        profile=grant["requested"],
        team=grant.get("team"),
        user=claim.user,
        granted=grant.get("slice"),
        gpu=grant.get("product"),
        started_at=claim.bound_at,
        code=decision.code if decision is not None else "admitted",
    )


def record_line(record: DemandRecord) -> str:
    """``demand {"t": ..., ...}``: one line, grep-able by its first word, JSON after it."""
    return MARKER + json.dumps(record.to_dict(), separators=(",", ":"), ensure_ascii=False)


@dataclass
class ParseResult:
    records: list[DemandRecord] = field(default_factory=list)
    #: ``source:line`` of each record
    where: list[str] = field(default_factory=list)
    skipped: int = 0  # lines that look like demand but cannot be read
    ignored: int = 0  # other lines (the rest of a hub log)
    #: the first problems, ``source:line: why`` each
    problems: list[str] = field(default_factory=list)

    def add_problem(self, where: str, why: str) -> None:
        self.skipped += 1
        if len(self.problems) < 20:
            self.problems.append(f"{where}: {why}")


def _number(raw: Mapping[str, Any], key: str, *, optional: bool = False) -> float | None:
    value = raw.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if value < 0:
        raise ValueError(f"{key} must be >= 0, got {value!r}")
    return float(value)


def _text(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {value!r}")
    return value


def _profile(name: str) -> str:
    return name if name == WHOLE_GPU else parse_profile_name(name).name


def record_from_dict(raw: Any) -> DemandRecord:
    """A record from its JSON object; :class:`ValueError` naming the bad field."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    if "t" not in raw or "profile" not in raw:
        raise ValueError("a record needs at least 't' and 'profile'")
    profile = _text(raw, "profile")
    if profile is None:
        raise ValueError("profile must be a MIG profile name")
    profile = _profile(profile)
    outcome = raw.get("outcome") or SERVED
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    duration = _number(raw, "duration_s", optional=True)
    if duration is None:
        duration = _number(raw, "held_s", optional=True)
    if duration is None and outcome == SERVED:
        raise ValueError("a served record needs duration_s (seconds)")
    granted = _text(raw, "granted")
    return DemandRecord(
        t=_number(raw, "t"),
        profile=profile,
        duration_s=duration,
        tier=_text(raw, "tier"),
        team=_text(raw, "team"),
        user=_text(raw, "user"),
        gpu=_text(raw, "gpu"),
        granted=_profile(granted) if granted else None,
        waited_s=_number(raw, "waited_s", optional=True) or 0.0,
        outcome=outcome,
        code=_text(raw, "code"),
    )


def parse_lines(
    lines: Iterable[str], source: str = "demand", result: ParseResult | None = None
) -> ParseResult:
    """Records from hub log lines (``... demand {...}``) or JSON lines, in input order.

    A line with the marker or starting with ``{`` that cannot be read is skipped and counted
    (with its line number); any other line is ignored (a hub log has many).
    """
    result = result if result is not None else ParseResult()
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        at = text.find(MARKER + "{")
        if at >= 0:
            payload = text[at + len(MARKER) :]
        elif text.startswith("{"):
            payload = text
        else:
            result.ignored += 1
            continue
        try:
            result.records.append(record_from_dict(json.loads(payload)))
            result.where.append(f"{source}:{number}")
        except json.JSONDecodeError as e:
            result.add_problem(f"{source}:{number}", f"not JSON ({e.msg} at column {e.colno})")
        except ValueError as e:
            result.add_problem(f"{source}:{number}", str(e))
    return result
