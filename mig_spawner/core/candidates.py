"""One candidate of a decision's fallback chain, and how it fared.

Its own module so that :mod:`.admission` (which makes them) and :mod:`.messages` (which
words them) both read it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .nodes import SliceType

# Candidate outcomes.
GRANTED, FULL, UNUSABLE, OVER_QUOTA = "granted", "full", "unusable", "quota"
FALLBACK_DISABLED, BEYOND_MAX_STEPS = "fallback-disabled", "beyond-max-steps"
NOT_NEEDED = "not-needed"  # after the granted candidate: not tried, reported for the form


@dataclass(frozen=True)
class CandidateReport:
    slice_type: SliceType
    step: int
    free: int
    total: int
    outcome: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.slice_type.profile,
            "gpu": self.slice_type.gpu_name,
            "resource": self.slice_type.resource,
            "step": self.step,
            "free": self.free,
            "total": self.total,
            "outcome": self.outcome,
            "reason": self.reason,
        }
