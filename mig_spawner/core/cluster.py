"""Cluster state, kept incrementally from Node and Pod watch events, plus in-flight reservations.

Every change is applied as one event (``apply_node_event``/``apply_pod_event``); indexes
are updated for just that object, so a spawn decision reads only the nodes that offer
the slice types of its tier and only the pods of the user's team -- it never scans the
cluster.

A *reservation* is an admitted spawn whose pod the watch has not reported yet. It
holds its slice on its node until the pod is seen bound to a node (then the pod itself
holds it) or is released (spawn failed, timed out, stopped). It holds its quota until
the pod is seen at all. So concurrent spawns never double-book a slice or overshoot a
quota, whatever the order in which reserve, release and pod events arrive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .nodes import NodeInfo, SliceType, parse_node
from .pods import Charge, PodInfo, label_value, parse_pod
from .quota import Usage

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass(frozen=True)
class Reservation:
    key: str  # the pod's "namespace/name"
    user: str
    team: str  # "" = the user's default quota
    slice_type: SliceType
    node: str
    charge: Charge
    server_name: str = ""
    tier: str = ""
    requested_profile: str = ""  # the profile the tier asked for (differs on a fallback)


def _add(counter: dict[str, int], requests: Mapping[str, int], sign: int) -> None:
    for resource, n in requests.items():
        counter[resource] = counter.get(resource, 0) + sign * n
        if counter[resource] == 0:
            del counter[resource]


class ClusterState:
    """Nodes, GPU pods and reservations. Pure: no I/O, the shell feeds it events."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.pods: dict[str, PodInfo] = {}
        self.reservations: dict[str, Reservation] = {}
        self.version = 0  # bumps on every change; lets shells cache derived views
        self._used: dict[str, dict[str, int]] = defaultdict(dict)  # node -> resource -> n
        self._reserved: dict[str, dict[str, int]] = defaultdict(dict)
        self._nodes_by_type: dict[SliceType, set[str]] = defaultdict(set)
        self._pods_by_scope: dict[str, set[str]] = defaultdict(set)  # quota scope -> pod keys
        #: reservation key -> uid of the *earlier* pod that had its name when it was made
        #: (a server restarted while its old pod is still listed); "" if that pod had none
        self._earlier: dict[str, str] = {}

    # ------------------------------------------------------------------ events

    def apply_node_event(self, event_type: str, obj: Any) -> NodeInfo | None:
        """Apply one Node watch event. Returns the parsed node (None when deleted).

        Raises ValueError for an object that is not a Node; a garbled Node is accepted
        and its problems listed in ``NodeInfo.problems``.
        """
        node = parse_node(obj)
        old = self.nodes.pop(node.name, None)
        if old is not None:
            for kind in old.offers:
                self._nodes_by_type[kind].discard(old.name)
                if not self._nodes_by_type[kind]:
                    del self._nodes_by_type[kind]
        self.version += 1
        if event_type == DELETED:
            return None
        self.nodes[node.name] = node
        for kind in node.offers:
            self._nodes_by_type[kind].add(node.name)
        return node

    def apply_pod_event(self, event_type: str, obj: Any) -> PodInfo | None:
        """Apply one Pod watch event (any namespace). Raises ValueError if it is not a Pod."""
        pod = parse_pod(obj)
        earlier = self._is_earlier_pod(event_type, pod)
        if not earlier:
            self._earlier.pop(pod.key, None)
        self._forget_pod(pod.key)
        self.version += 1
        if event_type == DELETED:
            if not earlier:
                self._drop_reservation(pod.key)
            return None
        if not pod.requests and not pod.managed:
            return pod  # holds no GPU and no quota: nothing to track
        self.pods[pod.key] = pod
        if pod.active and pod.node:
            _add(self._used[pod.node], pod.requests, +1)
        if pod.active and pod.managed:
            self._pods_by_scope[self.scope(pod.team, pod.user)].add(pod.key)
        if (pod.node or not pod.active) and not earlier:
            self._drop_reservation(pod.key)  # the pod now holds what was reserved
        if pod.active and pod.node:
            for resource in pod.requests:
                self._rebalance(pod.node, resource)
        return pod

    def _rebalance(self, node_name: str, resource: str) -> None:
        """Move reservations off ``node_name`` while pods and reservations overbook it.

        A reservation names a node, but the pod's node selector names only the GPU model:
        the scheduler may bind it (or another namespace's pod) to another node with the
        same slice type, one whose free slices were reserved for other spawns. Those
        reservations then move to a node of the same slice type that has room (the one
        the bound pod had reserved, typically), so the books match the slices again.
        """
        node = self.nodes.get(node_name)
        kind = node.resources.get(resource) if node is not None else None
        if kind is None:
            return
        while self._headroom(node, kind) < 0:
            movable = sorted(
                key
                for key, res in self.reservations.items()
                if res.node == node_name and res.slice_type == kind
            )
            room = [
                (self.free(other, kind), other.name)
                for other in self.nodes_offering(kind)
                if other.name != node_name and self.free(other, kind) > 0
            ]
            if not movable or not room:
                return  # nowhere to go: stay conservative (the node shows 0 free)
            _, target = min(room, key=lambda fn: (-fn[0], fn[1]))  # most room, then by name
            res = self.reservations[movable[-1]]
            _add(self._reserved[node_name], {resource: 1}, -1)
            _add(self._reserved[target], {resource: 1}, +1)
            self.reservations[res.key] = replace(res, node=target)
            self.version += 1

    def _is_earlier_pod(self, event_type: str, pod: PodInfo) -> bool:
        """Is this event about the pod that had the name before its reservation was made?

        Such a pod (finished, or being deleted) says nothing about the new spawn: its
        deletion or end must not drop the reservation. Told apart by ``metadata.uid``;
        without uids, a pod that is gone or finished is taken for the earlier one.
        """
        if pod.key not in self._earlier:
            return False
        earlier_uid = self._earlier[pod.key]
        if earlier_uid and pod.uid:
            return pod.uid == earlier_uid
        return event_type == DELETED or not pod.active

    def replace_nodes(self, objs: Iterable[Any]) -> list[str]:
        """Resync after a relist: the listed nodes are all there is. Returns problems."""
        return self._replace(objs, self.nodes, self.apply_node_event)

    def replace_pods(self, objs: Iterable[Any]) -> list[str]:
        return self._replace(objs, self.pods, self.apply_pod_event)

    def _replace(self, objs, current, apply) -> list[str]:
        problems, seen = [], set()
        for obj in objs:
            try:
                parsed = apply(MODIFIED, obj)
            except ValueError as e:
                problems.append(str(e))
                continue
            if parsed is not None:
                seen.add(getattr(parsed, "key", None) or parsed.name)
        for gone in [k for k in current if k not in seen]:
            name, _, ns_name = gone.partition("/")
            meta = {"namespace": name, "name": ns_name} if ns_name else {"name": name}
            apply(DELETED, {"metadata": meta})
        return problems

    def _forget_pod(self, key: str) -> None:
        old = self.pods.pop(key, None)
        if old is None:
            return
        if old.active and old.node:
            _add(self._used[old.node], old.requests, -1)
        if old.managed:
            scope = self.scope(old.team, old.user)
            self._pods_by_scope[scope].discard(key)
            if not self._pods_by_scope[scope]:
                del self._pods_by_scope[scope]

    # ------------------------------------------------------------------ reservations

    def reserve(self, reservation: Reservation) -> None:
        if reservation.key in self.reservations:
            raise ValueError(f"{reservation.key} is already reserved")
        self.reservations[reservation.key] = reservation
        earlier = self.pods.get(reservation.key)
        if earlier is not None:  # a server restarted while its old pod is still listed
            self._earlier[reservation.key] = earlier.uid
        _add(self._reserved[reservation.node], {reservation.slice_type.resource: 1}, +1)
        self.version += 1

    def release(self, key: str) -> bool:
        """Give back a reservation (spawn failed, timed out or stopped). True if one was held."""
        return self._drop_reservation(key)

    def _drop_reservation(self, key: str) -> bool:
        res = self.reservations.pop(key, None)
        self._earlier.pop(key, None)
        if res is None:
            return False
        _add(self._reserved[res.node], {res.slice_type.resource: 1}, -1)
        self.version += 1
        return True

    # ------------------------------------------------------------------ queries

    @staticmethod
    def scope(team: str, user: str | None) -> str:
        """Quota scope: the team, or the user alone when on the default quota.

        Names are compared as label values, so pods labelled by the spawner match the
        hub's user and group names whatever characters those contain.
        """
        return f"team:{label_value(team)}" if team else f"user:{label_value(user or '')}"

    def slice_types(self) -> list[SliceType]:
        """Every slice type some node offers, smallest first.

        Nodes of one slice type may report different figures (SMs, MiB: GFD versions
        differ); each type carries those of the first node by name offering it, so what
        users read does not depend on the order in which nodes were seen.
        """
        kinds = (self._representative(kind) for kind in self._nodes_by_type)
        return sorted(kinds, key=lambda t: t.sort_key)

    def _representative(self, kind: SliceType) -> SliceType:
        return self.node_slice_type(self.nodes[min(self._nodes_by_type[kind])], kind)

    @staticmethod
    def node_slice_type(node: NodeInfo, kind: SliceType) -> SliceType:
        """``kind`` as ``node`` reports it (its own SM and memory figures)."""
        return next((k for k in node.offers if k == kind), kind)

    def nodes_offering(self, kind: SliceType) -> list[NodeInfo]:
        return [self.nodes[n] for n in sorted(self._nodes_by_type.get(kind, ()))]

    def free(self, node: NodeInfo, kind: SliceType) -> int:
        """Slices of ``kind`` on ``node`` that neither a pod nor a reservation holds."""
        return max(self._headroom(node, kind), 0)

    def _headroom(self, node: NodeInfo, kind: SliceType) -> int:
        """Like :meth:`free`, but negative when pods and reservations overbook the node."""
        resource = kind.resource
        held = self._used[node.name].get(resource, 0) + self._reserved[node.name].get(resource, 0)
        return node.offers.get(kind, 0) - held

    def usage(self, team: str, user: str) -> Usage:
        """Quota usage of ``team`` ("" = ``user`` on the default quota), incl. reservations."""
        scope = self.scope(team, user)
        usage = Usage()
        holders: list[tuple[str, str, Charge, str]] = []
        for key in self._pods_by_scope.get(scope, ()):
            pod = self.pods[key]
            holders.append(
                (pod.user or "", pod.server_name, pod.charge or Charge(0, 0), pod.profile)
            )
        for res in self.reservations.values():
            unseen = res.key not in self.pods or res.key in self._earlier
            if self.scope(res.team, res.user) == scope and unseen:
                holders.append((res.user, res.server_name, res.charge, res.slice_type.profile))
        me = label_value(user)
        for holder, server_name, charge, profile in holders:
            usage.compute_slices += charge.compute_slices
            usage.memory_gb += charge.memory_gb
            usage.servers += 1
            if label_value(holder) == me:
                usage.user_compute_slices += charge.compute_slices
                usage.own_servers.append((server_name, profile))
        usage.own_servers.sort()
        return usage
