"""A tier's reclaim rules: when its idle GPU servers may be stopped for someone waiting.

Opt-in per tier (no ``reclaim`` key: never)::

    c.MIGSpawner.tiers = {
        "1g": {
            "display_name": "1g notebook",
            "max_wait": 1800,
            "reclaim": {"idle_after": 3600, "grace": 600, "max_session": 8 * 3600},
        },
    }

- ``idle_after`` (seconds, > 0): a server of the tier is idle once the hub saw no
  activity for that long and, where Prometheus is configured, its GPU stayed idle over
  the same window. Only an idle server may be reclaimed, and only for a spawn waiting in
  line for a slice it holds.
- ``grace`` (seconds, default 600): the warning comes first; the stop only once the
  grace has run out and the server is still idle and still needed.
- ``max_session`` (seconds, optional): the longest a server of the tier may run. An
  older one is warned, then stopped after ``grace``, whether or not anyone waits and
  whatever its activity (as the idle culler's ``--max-age``).

Parsed here (not in :mod:`.policy`, which keeps its tiers' other keys) with the same
located :class:`~.policy.ConfigError` words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

RECLAIM_KEYS = ("idle_after", "grace", "max_session")
DEFAULT_GRACE = 600.0


@dataclass(frozen=True)
class ReclaimRules:
    idle_after: float | None = None  # None: idle servers of the tier are never reclaimed
    grace: float = DEFAULT_GRACE
    max_session: float | None = None  # None: no limit

    @property
    def active(self) -> bool:
        return self.idle_after is not None or self.max_session is not None


def parse_rules(where: str, value: Any) -> ReclaimRules | None:
    """``tiers[slug].reclaim`` as :class:`ReclaimRules` (None when absent).

    Raises the policy's ConfigError naming ``where`` and the key at fault."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where} must be a mapping like {{'idle_after': 3600, 'grace': 600}}, not {value!r}"
        )
    unknown = sorted(str(k) for k in value if k not in RECLAIM_KEYS)
    if unknown:
        raise ConfigError(
            f"{where} has unknown key(s) {', '.join(map(repr, unknown))}:"
            f" use {', '.join(RECLAIM_KEYS)}"
        )
    if value.get("idle_after") is None and value.get("max_session") is None:
        raise ConfigError(f"{where} needs idle_after or max_session (seconds)")

    def seconds(key: str, default: float | None, *, zero: bool = False) -> float | None:
        raw = value.get(key, default)
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise ConfigError(f"{where}.{key} must be a number of seconds, not {raw!r}")
        if raw < 0 or (raw == 0 and not zero):
            bound = "0 or more" if zero else "above 0"
            raise ConfigError(f"{where}.{key} must be {bound} seconds, not {raw!r}")
        return float(raw)

    return ReclaimRules(
        idle_after=seconds("idle_after", None),
        grace=seconds("grace", DEFAULT_GRACE, zero=True),
        max_session=seconds("max_session", None),
    )
