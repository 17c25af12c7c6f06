"""Quota usage per scope, kept incrementally by the cluster cache's pod events and claims.

A *scope* is a team, or one user on the default quota (:func:`scope`). The book holds,
per scope, the sums of its active managed pods (compute slices, memory, servers), each
user's own servers in it, and the keys of the reservations (assumed claims) charged to it,
so :meth:`UsageBook.usage` costs O(the user's own servers + the scope's reservations),
never a scan of the cluster. Pure: standard library only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from .pods import Charge, PodInfo
from .quota import Usage


def scope(team: str, user: str | None) -> tuple[str, str]:
    """Quota scope: the team, or the user alone when on the default quota.

    Exact names, tagged by kind: two different users, or two different teams, never
    share a scope whatever characters their names contain (a user and a team of the
    same name do not either). The names come from the hub's annotations, exact.
    """
    return ("team", team) if team else ("user", user or "")


class UsageBook:
    """What each quota scope holds: active managed pods and in-flight reservations."""

    def __init__(self) -> None:
        self.pods_by_scope: dict[tuple, set[str]] = defaultdict(set)  # scope -> pod keys
        self.pods_by_user: dict[str, set[str]] = defaultdict(set)  # exact user -> pod keys
        #: [compute slices, memory in MB, servers] per scope
        self.sums: dict[tuple, list[int]] = {}
        #: scope -> exact user -> pod key -> (server name, profile, compute slices)
        self.users: dict[tuple, dict[str, dict[str, tuple[str, str, int]]]] = {}
        self.reservations_by_scope: dict[tuple, set[str]] = defaultdict(set)

    def counts(self, pod: PodInfo) -> bool:
        """Is ``pod`` counted in its scope?"""
        return pod.key in self.pods_by_scope.get(scope(pod.team, pod.user), ())

    def count_pod(self, pod: PodInfo, sign: int) -> None:
        """Add (+1) or take out (-1) an active managed pod from its scope's usage."""
        where = scope(pod.team, pod.user)
        charge = pod.charge or Charge(0, 0)
        sums = self.sums.setdefault(where, [0, 0, 0])
        sums[0] += sign * charge.compute_slices
        sums[1] += sign * round(charge.memory_gb * 1000)
        sums[2] += sign
        users = self.users.setdefault(where, {})
        user = pod.user or ""
        if sign > 0:
            self.pods_by_scope[where].add(pod.key)
            self.pods_by_user[user].add(pod.key)
            entry = (pod.server_name, pod.profile, charge.compute_slices)
            users.setdefault(user, {})[pod.key] = entry
            return
        for index, bucket in ((self.pods_by_scope, where), (self.pods_by_user, user)):
            index[bucket].discard(pod.key)
            if not index[bucket]:
                del index[bucket]
        if where not in self.pods_by_scope:
            del self.sums[where]
        mine = users.get(user, {})
        mine.pop(pod.key, None)
        if not mine:
            users.pop(user, None)
        if not users:
            self.users.pop(where, None)

    def reservation_added(self, key: str, team: str, user: str) -> None:
        self.reservations_by_scope[scope(team, user)].add(key)

    def reservation_dropped(self, key: str, team: str, user: str) -> None:
        where = scope(team, user)
        self.reservations_by_scope[where].discard(key)
        if not self.reservations_by_scope[where]:
            del self.reservations_by_scope[where]

    def usage(
        self,
        team: str,
        user: str,
        scopes_now: Iterable[str] | None,
        pods: Mapping[str, PodInfo],
        reservations: Mapping[str, Any],
        earlier: Mapping[str, str],
    ) -> Usage:
        """See :meth:`~mig_spawner.core.cluster.ClusterState.usage`."""
        where = scope(team, user)
        slices, memory_mb, servers = self.sums.get(where, (0, 0, 0))
        usage = Usage(compute_slices=slices, memory_gb=memory_mb / 1000, servers=servers)
        mine = self.users.get(where, {}).get(user, {})
        for server_name, profile, own_slices in mine.values():
            usage.user_compute_slices += own_slices
            usage.own_servers.append((server_name, profile))
        if scopes_now is not None:
            allowed = set(scopes_now)
            in_scope = self.pods_by_scope.get(where, ())
            for key in self.pods_by_user.get(user, ()):
                pod = pods[key]
                if pod.team in allowed or key in in_scope:
                    continue
                charge = pod.charge or Charge(0, 0)
                usage.compute_slices += charge.compute_slices
                usage.memory_gb += charge.memory_gb
                usage.servers += 1
                usage.user_compute_slices += charge.compute_slices
                usage.own_servers.append((pod.server_name, pod.profile))
        for key in self.reservations_by_scope.get(where, ()):
            res = reservations[key]
            if key in pods and key not in earlier:
                continue  # its pod is seen: the pod is counted instead
            usage.compute_slices += res.charge.compute_slices
            usage.memory_gb += res.charge.memory_gb
            usage.servers += 1
            if res.user == user:
                usage.user_compute_slices += res.charge.compute_slices
                usage.own_servers.append((res.server_name, res.slice_type.profile))
        usage.own_servers.sort()
        return usage
