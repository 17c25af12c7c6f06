"""Give back: a server running on a fallback slice, and whether its own size is free now.

A spawn that fell back (every slice of its tier's size was taken) runs on a larger slice
than it asked for: it is a *borrower*. Once a slice of the size its tier asks for is free,
restarting it would give the larger one back to those who need it. Nothing restarts by
itself: :func:`offers` only says, for a user's running servers, which could move down and
what is free, so that the hub's pages can tell the user and offer one click.

Whether a restart would get the tier's own size is the admission decision's own answer,
read as the restart would meet it: its current slice and its charge given back first (the
restart stops it), the rest of the cluster as the cache has it now. Pure: core only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .admission import chain_rows
from .cluster import ClusterState
from .pods import Charge, PodInfo
from .policy import Policy
from .quota import check_quota, released
from .snapshot import Snapshot


@dataclass(frozen=True)
class Borrower:
    """One of a user's servers on a larger slice than its tier asks for."""

    key: str  # the pod's "namespace/name"
    server_name: str
    tier: str
    tier_name: str
    holds: str  # the slice it runs on, e.g. "2g.20gb"
    wants: str  # the slice its tier asks for, e.g. "1g.10gb"
    #: how many slices of the tier's own size a restart could be granted now (0: none)
    free: int
    total: int
    #: why a restart would not get its own size now ("" when it would)
    blocked: str = ""

    @property
    def can_give_back(self) -> bool:
        return self.free > 0 and not self.blocked

    @property
    def message(self) -> str:
        if self.can_give_back:
            return (
                f"a {self.wants} slice is free ({self.free} of {self.total}): "
                f"restart to give back the {self.holds}"
            )
        why = self.blocked or f"every {self.wants} slice is taken (0 of {self.total} free)"
        return f"running on a {self.holds} instead of a {self.wants}: {why}"

    @property
    def line(self) -> str:
        """One line for a page that is not about this server (the next spawn form)."""
        who = f"Your server “{self.server_name}”" if self.server_name else "Your default server"
        said = f"{who} ({self.tier_name}) runs on a {self.holds} slice"
        if not self.can_give_back:
            return f"{said} instead of a {self.wants}."
        return (
            f"{said}. A {self.wants} slice is free now ({self.free} of {self.total}): "
            f"restart it from your home page to give back the {self.holds}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "server_name": self.server_name,
            "tier": self.tier,
            "tier_name": self.tier_name,
            "holds": self.holds,
            "wants": self.wants,
            "free": self.free,
            "total": self.total,
            "can_give_back": self.can_give_back,
            "message": self.message,
            "line": self.line,
        }


def borrowers(
    policy: Policy, state: ClusterState | Snapshot, user: str, groups: Iterable[str]
) -> list[Borrower]:
    """``user``'s running servers on a fallback slice, each with what a restart would get.

    A server counts once the hub created it for ``user`` with a tier, on a slice other than
    the one its tier asked for, and it holds its slice (bound, or pinned and pending).
    Servers of a tier the policy no longer has, or no longer shows to ``user``, are left
    out: a restart could not ask for it. O(the user's own servers x the tier's chain): the
    hub's home page asks on every load.
    """
    view = state.snapshot()
    groups = frozenset(groups)
    scopes = tuple(policy.teams_for(groups)) or ("",)
    found = []
    for pod in sorted(view.pods_of(user), key=lambda p: (p.server_name, p.key)):
        if pod.user != user or not pod.slot or not pod.tier or not pod.requested_profile:
            continue
        if pod.profile == pod.requested_profile or not pod.profile:
            continue
        tier = policy.tier(pod.tier)
        if tier is None or not tier.visible_to(groups):
            continue
        found.append(_borrower(pod, tier, policy, view, scopes))
    return found


def _borrower(pod: PodInfo, tier, policy: Policy, view: Snapshot, scopes) -> Borrower:
    rows = chain_rows(tier, view, policy)
    own = [row for row in rows if row.step == 0]
    free = sum(row.free for row in own if row.node is not None)
    total = sum(row.total for row in own)
    wants = own[0].slice_type.profile if own else pod.requested_profile
    blocked = ""
    grantable = next((row for row in own if row.node is not None), None)
    if grantable is not None:
        kind = grantable.slice_type
        charge = Charge(kind.compute_slices, kind.memory_gb)
        usage = released(view.usage(pod.team, pod.user or "", scopes), pod.charge)
        check = check_quota(policy.quota_for(pod.team or None), usage, charge)
        if not check.ok:
            blocked = f"team {pod.team}'s quota: {check.reason}" if pod.team else check.reason
    return Borrower(
        key=pod.key,
        server_name=pod.server_name,
        tier=tier.slug,
        tier_name=tier.display_name,
        holds=pod.profile,
        wants=wants,
        free=free,
        total=total,
        blocked=blocked,
    )
