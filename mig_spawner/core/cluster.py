"""The cluster cache: kept incrementally from Node and Pod watch events, plus assumed claims.

The split is Kueue's Cache / Snapshot / Assume: the watch feeds this cache
(``apply_node_event``/``apply_pod_event``); a decision reads a consistent, read-only
:class:`~.snapshot.Snapshot` of it (:meth:`ClusterState.snapshot`); an admitted spawn is
then *assumed* on the cache (:meth:`ClusterState.assume`) until its pod is seen, and
*forgotten* (:meth:`ClusterState.forget`) when the spawn ends without one. The indexes
live in :mod:`.index`, the quota sums in :mod:`.usage`; values derived from the cache are
cached by the modules that derive them (:mod:`.memo`).

Every change is applied as one event (``apply_node_event``/``apply_pod_event``); indexes
are updated for just that object, so a spawn decision reads only the nodes that offer
the slice types of its tier and only the pods of the user's team -- it never scans the
cluster.

A *reservation* is an admitted spawn whose pod the watch has not reported yet. It
holds its slice on its node and its quota until the pod is seen (the pod is pinned to that
node, so from then on the pod itself holds both, bound or not -- which also holds after a
hub restart) or is released (spawn failed, timed out, stopped). So concurrent spawns never
double-book a slice or overshoot a quota, whatever the order in which reserve, release
and pod events arrive.

A reservation whose node becomes unusable before its pod exists (cordoned, NotReady,
tainted against the tier, deleted) moves to another node within the tier's reach, or is
dropped and listed in :attr:`ClusterState.displaced` for the spawner to decide again.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .catalog import Catalog, default_catalog
from .index import Indexes, Partition, SliceIndex
from .kueue import KueueObjects
from .nodes import NodeInfo, SliceType, parse_node
from .pods import Charge, PodInfo, Trust, parse_pod
from .quota import Usage
from .snapshot import Snapshot, StaleSnapshot
from .usage import UsageBook, scope

_TOKENS = itertools.count(1)  # one per cache: memo keys tell caches apart by value

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
    #: the tier's reach: a reservation only ever moves to nodes this selector and these
    #: tolerations admit
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()

    def fits(self, node: NodeInfo) -> bool:
        """Could this reservation's pod run on ``node`` now?"""
        return (
            node.usable
            and node.admits(self.node_selector, self.tolerations) is None
            and self.slice_type in node.offers
        )


def _add(counter: dict[str, int], requests: Mapping[str, int], sign: int) -> None:
    for resource, n in requests.items():
        counter[resource] = counter.get(resource, 0) + sign * n
        if counter[resource] == 0:
            del counter[resource]


class ClusterState:
    """The cache: nodes, GPU pods and assumed claims. Pure: no I/O, the shell feeds it events."""

    def __init__(self, trust: Trust | None = None, catalog: Catalog | None = None) -> None:
        #: which pods are this hub's (count toward quotas); others only hold capacity
        self.trust = trust or Trust()
        #: the GPU models and MIG profiles nodes and pods are read with; the shipped one
        #: unless the shell passes another
        self.catalog = catalog if catalog is not None else default_catalog()
        self.token = next(_TOKENS)
        self.nodes: dict[str, NodeInfo] = {}
        self.pods: dict[str, PodInfo] = {}
        self.reservations: dict[str, Reservation] = {}
        self.version = 0  # bumps on every change; lets shells cache derived views
        #: bumps only when a node's offers, labels, taints or readiness change (chains)
        self.nodes_version = 0
        self._used: dict[str, dict[str, int]] = defaultdict(dict)  # node -> resource -> n
        self._reserved: dict[str, dict[str, int]] = defaultdict(dict)
        self._nodes_by_type: dict[SliceType, set[str]] = defaultdict(set)
        #: reservation key -> why it was dropped (its node went away before the pod existed)
        self.displaced: dict[str, str] = {}
        #: reservation key -> uid of the *earlier* pod that had its name when it was made
        #: (a server restarted while its old pod is still listed); "" if that pod had none
        self._earlier: dict[str, str] = {}
        # Indexes for O(chain x log N) decisions (see core/index.py)
        self._indexes = Indexes()
        self._book = UsageBook()  # quota usage per scope (core/usage.py)
        #: Kueue mode: Kueue's queues and workloads as the watch has them (core/kueue.py),
        #: and the namespace of the pods and their LocalQueues
        self.kueue = KueueObjects()
        self.kueue_namespace = ""

    def snapshot(self) -> Snapshot:
        """A read-only view of the cache as it is now, for one decision."""
        return Snapshot(self)

    # ------------------------------------------------------------------ events

    def apply_node_event(self, event_type: str, obj: Any) -> NodeInfo | None:
        """Apply one Node watch event. Returns the parsed node (None when deleted).

        Raises ValueError for an object that is not a Node; a garbled Node is accepted
        and its problems listed in ``NodeInfo.problems``.
        """
        node = parse_node(obj, self.catalog)
        old = self.nodes.get(node.name)
        self.version += 1
        if event_type != DELETED and old == node:
            return node  # a heartbeat: nothing a decision reads has changed
        if old is not None:
            del self.nodes[old.name]
            for kind in old.offers:
                self._nodes_by_type[kind].discard(old.name)
                if not self._nodes_by_type[kind]:
                    del self._nodes_by_type[kind]
            self._indexes.node_removed(old)
        self.nodes_version += 1
        if event_type != DELETED:
            self.nodes[node.name] = node
            for kind in node.offers:
                self._nodes_by_type[kind].add(node.name)
            self._indexes.node_added(node, self.free)
        # After the indexes have the node: moving a reservation updates them through _hold.
        self._displace_from(node.name, "deleted" if event_type == DELETED else None)
        return None if event_type == DELETED else node

    def _displace_from(self, node_name: str, gone: str | None) -> None:
        """Move (or drop) the reservations on ``node_name`` that can no longer start there."""
        node = self.nodes.get(node_name)
        stuck = sorted(
            key
            for key, res in self.reservations.items()
            if res.node == node_name and (node is None or not res.fits(node))
        )
        for key in stuck:
            res = self.reservations[key]
            why = gone or (node.why_unusable() if node is not None else None)
            if why is None and node is not None:
                why = node.admits(res.node_selector, res.tolerations) or "no longer offers it"
            target = self._room_for(res, exclude=node_name)
            if target is None:
                self._drop_reservation(key)
                self.displaced[key] = f"node {node_name} is {why}"
            else:
                self._hold(self._reserved, node_name, {res.slice_type.resource: 1}, -1)
                self._hold(self._reserved, target, {res.slice_type.resource: 1}, +1)
                self.reservations[key] = replace(res, node=target)
                self.version += 1

    def _room_for(self, res: Reservation, exclude: str) -> str | None:
        """The node within ``res``'s reach with the most free slices of its type, if any.

        Runs on the (rare) events that move a reservation, never on a decision.
        """
        room = [
            (self.free(other, res.slice_type), other.name)
            for other in self.nodes_offering(res.slice_type)
            if other.name != exclude and res.fits(other)
        ]
        room = [r for r in room if r[0] > 0]
        return min(room, key=lambda fn: (-fn[0], fn[1]))[1] if room else None

    def apply_pod_event(self, event_type: str, obj: Any) -> PodInfo | None:
        """Apply one Pod watch event (any namespace). Raises ValueError if it is not a Pod."""
        pod = parse_pod(obj, self.trust, self.catalog)
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
        if pod.slot:
            self._hold(self._used, pod.slot, pod.requests, +1)
        if pod.active and pod.managed:
            self._book.count_pod(pod, +1)
        if (pod.slot or not pod.active) and not earlier:
            self._drop_reservation(pod.key)  # the pod now holds what was reserved
        if pod.slot:
            for resource in pod.requests:
                self._rebalance(pod.slot, resource)
        return pod

    def _rebalance(self, node_name: str, resource: str) -> None:
        """Move reservations off ``node_name`` while pods and reservations overbook it.

        Our pods are pinned to their reserved node, but a pod the hub did not create (a
        batch job, another hub's) may bind to a node whose free slices were reserved for
        spawns whose pods do not exist yet. Those reservations then move to a node within
        their tier's reach, usable, with room; if there is none they stay (the node shows
        0 free, and the spawn's own pod will fail to schedule and be decided again).
        """
        node = self.nodes.get(node_name)
        kind = node.resources.get(resource) if node is not None else None
        if kind is None:
            return
        while self._headroom(node, kind) < 0:
            movable = sorted(
                (key, target)
                for key, res in self.reservations.items()
                if res.node == node_name
                and res.slice_type == kind
                and (target := self._room_for(res, exclude=node_name)) is not None
            )
            if not movable:
                return  # nowhere to go: stay conservative (the node shows 0 free)
            key, target = movable[-1]
            res = self.reservations[key]
            self._hold(self._reserved, node_name, {resource: 1}, -1)
            self._hold(self._reserved, target, {resource: 1}, +1)
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

    def apply_kueue_event(self, kind: str, event_type: str, obj: Any) -> None:
        self.kueue = self.kueue.applied(kind, event_type, obj)
        self.version += 1

    def replace_kueue(self, kind: str, objs: Iterable[Any]) -> None:
        self.kueue = self.kueue.replaced(kind, objs)
        self.version += 1

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
        if old.slot:
            self._hold(self._used, old.slot, old.requests, -1)
        if old.managed and self._book.counts(old):
            self._book.count_pod(old, -1)

    def _hold(self, book: dict, node_name: str, requests: Mapping[str, int], sign: int) -> None:
        """Change what pods (``_used``) or reservations (``_reserved``) hold on a node.

        Every hold on a slice goes through here, so the indexes' free counts follow.
        """
        _add(book[node_name], requests, sign)
        node = self.nodes.get(node_name)
        if node is None or not self._indexes:
            return
        for resource in requests:
            kind = node.resources.get(resource)
            if kind is None or kind not in node.offers:
                continue
            self._indexes.free_changed(node_name, kind, self.free(node, kind))

    # ------------------------------------------------------------------ assume / forget

    def assume(self, reservation: Reservation, *, seen: Snapshot | None = None) -> None:
        """Hold an admitted spawn's slice and quota until its pod is seen (or it is forgotten).

        ``seen``: the snapshot the decision read; refused (:class:`StaleSnapshot`) if the
        cache has changed since, so a decision is never assumed on state it did not see.
        """
        if seen is not None and (seen.cache is not self or seen.version != self.version):
            raise StaleSnapshot(f"{reservation.key}: the cluster changed since the decision")
        if reservation.key in self.reservations:
            raise ValueError(f"{reservation.key} is already reserved")
        self.reservations[reservation.key] = reservation
        self.displaced.pop(reservation.key, None)
        earlier = self.pods.get(reservation.key)
        if earlier is not None:  # a server restarted while its old pod is still listed
            self._earlier[reservation.key] = earlier.uid
        self._book.reservation_added(reservation.key, reservation.team, reservation.user)
        self._hold(self._reserved, reservation.node, {reservation.slice_type.resource: 1}, +1)
        self.version += 1

    def forget(self, key: str) -> bool:
        """Drop an assumed spawn (failed, timed out, stopped). True if one was held."""
        self.displaced.pop(key, None)
        return self._drop_reservation(key)

    def _drop_reservation(self, key: str) -> bool:
        res = self.reservations.pop(key, None)
        self._earlier.pop(key, None)
        if res is None:
            return False
        self._book.reservation_dropped(key, res.team, res.user)
        self._hold(self._reserved, res.node, {res.slice_type.resource: 1}, -1)
        self.version += 1
        return True

    # ------------------------------------------------------------------ queries

    scope = staticmethod(scope)  # quota scope of (team, user): see core/usage.py

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

    def usage(self, team: str, user: str, scopes_now: Iterable[str] | None = None) -> Usage:
        """Quota usage of ``team`` ("" = ``user`` on the default quota), incl. reservations.

        ``scopes_now``: the teams whose quota applies to ``user`` now ("" for the default
        quota). ``user``'s servers recorded under any other scope -- a team since removed
        from ``team_quotas``, a group the user left, the default quota of a user who has
        since joined a team -- count here too: changing the configuration never frees a
        running server from every quota.

        O(the user's own servers + the scope's in-flight reservations): the scope's sums
        are kept by the pod events.
        """
        return self._book.usage(team, user, scopes_now, self.pods, self.reservations, self._earlier)

    def pods_of(self, user: str) -> list[PodInfo]:
        """``user``'s active managed pods (those its quotas count): O(their own)."""
        return [self.pods[key] for key in sorted(self._book.pods_by_user.get(user, ()))]

    def placement_problem(self, key: str) -> str | None:
        """Why the spawn ``key`` (reserved, or its pod created but unbound) cannot start, if so.

        Its reservation was displaced, or its pod waits for a pinned node that is gone,
        cordoned, NotReady or no longer offers the slice. None while it can still start.
        """
        if key in self.displaced:
            return self.displaced[key]
        pod = self.pods.get(key)
        if pod is None or pod.node or not pod.active or not pod.pinned:
            return None
        node = self.nodes.get(pod.pinned)
        if node is None:
            return f"node {pod.pinned} is deleted"
        if not node.usable:
            return f"node {pod.pinned} is {node.why_unusable()}"
        if not any(r in node.resources for r in pod.requests):
            return f"node {pod.pinned} no longer offers {pod.profile}"
        return None

    # ------------------------------------------------------------------ indexes

    def slice_index(self, kind: SliceType, node_selector, tolerations) -> SliceIndex:
        """The index of ``kind`` on the nodes a pod with this selector/tolerations may reach.

        Built from the nodes offering ``kind`` on first use (O(those nodes)), then kept
        by the events; a lookup is O(1).
        """
        return self._indexes.get(
            kind, node_selector, tolerations, lambda: self.nodes_offering(kind), self.free
        )

    def slice_partition(self, kind: SliceType, reaches) -> Partition:
        """The nodes offering ``kind``, split by which of ``reaches`` ((node selector,
        tolerations) pairs) admit them, each class with its own index (core/reach.py).

        Built on first use (O(nodes offering ``kind`` x reaches)), then kept by the events.
        """
        return self._indexes.partition(kind, reaches, lambda: self.nodes_offering(kind), self.free)
