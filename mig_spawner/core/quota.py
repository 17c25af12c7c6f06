"""Quota arithmetic: would one more server of a given charge fit a team's limits?"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .pods import Charge
from .policy import Quota


@dataclass
class Usage:
    """What a quota scope (a team, or one user on the default quota) holds right now."""

    compute_slices: int = 0
    memory_gb: float = 0
    servers: int = 0
    user_compute_slices: int = 0
    #: (server name, profile) of the asking user's own servers, for refusal messages
    own_servers: list[tuple[str, str]] = field(default_factory=list)


def released(usage: Usage, charge: Any, *, same_user: bool = True) -> Usage:
    """``usage`` once a server of its scope holding ``charge`` has stopped (a restart or a
    reclaim stops it first); ``same_user``: it was the asking user's own server."""
    slices = charge.compute_slices if charge is not None else 0
    memory = charge.memory_gb if charge is not None else 0
    return replace(
        usage,
        compute_slices=max(usage.compute_slices - slices, 0),
        memory_gb=max(usage.memory_gb - memory, 0),
        servers=max(usage.servers - 1, 0),
        user_compute_slices=max(usage.user_compute_slices - (slices if same_user else 0), 0),
        own_servers=list(usage.own_servers),
    )


UNITS = ("compute_slices", "memory_gb", "servers", "per_user_compute_slices")


@dataclass(frozen=True)
class QuotaCheck:
    ok: bool
    unit: str  # the limit that refused, else the main limit configured
    used: float  # before this server
    limit: float | None  # None = unlimited
    needed: float  # what this server adds in ``unit``
    reason: str = ""

    def to_dict(self, charge_mode: str) -> dict:
        def num(x):
            return int(x) if isinstance(x, float) and x.is_integer() else x

        return {
            "unit": self.unit,
            "used": num(self.used),
            "limit": num(self.limit),
            "needed": num(self.needed),
            "charge": charge_mode,
        }


def _figures(
    quota: Quota, usage: Usage, charge: Charge
) -> list[tuple[str, float, float | None, float]]:
    return [
        ("servers", usage.servers, quota.servers, 1),
        ("compute_slices", usage.compute_slices, quota.compute_slices, charge.compute_slices),
        ("memory_gb", usage.memory_gb, quota.memory_gb, charge.memory_gb),
        (
            "per_user_compute_slices",
            usage.user_compute_slices,
            quota.per_user_compute_slices,
            charge.compute_slices,
        ),
    ]


def _refusal(unit: str, used: float, limit: float, needed: float) -> str:
    if unit == "servers":
        return f"{used:g} of {limit:g} servers already running"
    if unit == "memory_gb":
        return f"{used:g} of {limit:g} GB of GPU memory in use; this needs {needed:g} GB more"
    if unit == "per_user_compute_slices":
        return f"you hold {used:g} of your {limit:g} compute slices; this needs {needed:g} more"
    return f"{used:g} of {limit:g} compute slices in use; this needs {needed:g} more"


def check_quota(quota: Quota, usage: Usage, charge: Charge) -> QuotaCheck:
    """Check every configured limit; report the first that refuses, else the main one."""
    figures = _figures(quota, usage, charge)
    for unit, used, limit, needed in figures:
        if limit is not None and used + needed > limit:
            return QuotaCheck(False, unit, used, limit, needed, _refusal(unit, used, limit, needed))
    by_unit = {f[0]: f for f in figures}
    for unit in UNITS:  # the figure users care about first
        if by_unit[unit][2] is not None:
            _, used, limit, needed = by_unit[unit]
            return QuotaCheck(True, unit, used, limit, needed)
    return QuotaCheck(True, "compute_slices", usage.compute_slices, None, charge.compute_slices)


def describe_usage(check: QuotaCheck) -> str:
    """'6 of 8 compute slices in use' (or 'no limit')."""
    if check.limit is None:
        return f"{check.used:g} compute slices in use, no limit"
    names = {
        "compute_slices": "compute slices",
        "memory_gb": "GB of GPU memory",
        "servers": "servers",
        "per_user_compute_slices": "of your own compute slices",
    }
    return f"{check.used:g} of {check.limit:g} {names[check.unit]} in use"
