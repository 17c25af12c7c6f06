"""Indexes that make a decision cost O(chain x log N): one per (slice type, node reach).

A tier reaches a node by its ``node_selector`` and ``tolerations`` (its *reach*). For
each slice type and each reach some tier has asked about, a :class:`SliceIndex` keeps,
incrementally:

- the reachable nodes offering the type, and how many of them are usable (Ready and not
  cordoned) or why the others are not;
- the total slices of the type on them, and how many are free on the usable ones;
- a heap of (-free, node name) that yields the node to grant -- most free, then by name
  -- without sorting or scanning: entries go stale when a node's free count changes and
  are dropped lazily when they reach the top; the heap is rebuilt when stale entries
  outnumber live ones, so its size stays O(nodes) and each change costs O(log N).

:class:`Partition` splits the nodes offering one slice type by which of several reaches
admit them, with one :class:`SliceIndex` per such class: the node to grant among the
nodes the fewest other tiers can use (:mod:`.reach`) without scanning.

:class:`Indexes` holds them all for one :class:`~mig_spawner.core.cluster.ClusterState`,
which updates them from the events that change a node's offers or a node's held slices.
Pure: standard library only.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .nodes import NodeInfo, SliceType

#: members value of a reachable node that is NotReady or cordoned
_UNUSABLE = -1


def reach_key(node_selector: Mapping[str, str], tolerations) -> tuple:
    """A hashable key for a tier's reach: its node selector and tolerations."""
    return (
        tuple(sorted(node_selector.items())),
        tuple(tuple(sorted((str(k), repr(v)) for k, v in dict(t).items())) for t in tolerations),
    )


class SliceIndex:
    """Reachable nodes offering one slice type, with free counts and the node to grant."""

    __slots__ = ("_heap", "free", "kind", "members", "reach", "reasons", "total", "usable")

    def __init__(self, kind: SliceType, reach: tuple = ((), ())) -> None:
        self.kind = kind
        self.reach = reach  # reach_key() of the node selector and tolerations
        #: node name -> free slices it contributes (usable nodes), or -1 (unusable)
        self.members: dict[str, int] = {}
        self.total = 0  # slices of the type on every reachable node, usable or not
        self.free = 0  # free slices on usable reachable nodes
        self.usable = 0  # usable reachable nodes
        self.reasons: dict[str, int] = {}  # why_unusable() -> number of nodes
        self._heap: list[tuple[int, str]] = []

    def add(self, node: NodeInfo, free: int) -> None:
        self.total += node.offers.get(self.kind, 0)
        if node.usable:
            self.members[node.name] = free
            self.free += free
            self.usable += 1
            if free > 0:
                self._push(free, node.name)
        else:
            self.members[node.name] = _UNUSABLE
            why = node.why_unusable() or "unusable"
            self.reasons[why] = self.reasons.get(why, 0) + 1

    def remove(self, node: NodeInfo) -> None:
        """Take out ``node``: the same NodeInfo that was added."""
        held = self.members.pop(node.name, None)
        if held is None:
            return
        self.total -= node.offers.get(self.kind, 0)
        if held == _UNUSABLE:
            why = node.why_unusable() or "unusable"
            self.reasons[why] -= 1
            if not self.reasons[why]:
                del self.reasons[why]
        else:
            self.free -= held
            self.usable -= 1

    def update(self, name: str, free: int) -> None:
        """A usable member's free count changed (a pod or reservation came or went)."""
        held = self.members.get(name)
        if held is None or held in (_UNUSABLE, free):
            return
        self.members[name] = free
        self.free += free - held
        if free > 0:
            self._push(free, name)

    def best(self, exclude: frozenset[str] = frozenset()) -> str | None:
        """The node to grant: most free slices, then by name; None if none is free.

        ``exclude``: nodes not to grant on (a spawn's pod already failed there); their
        entries are set aside and put back, O(|exclude| x log N).
        """
        heap = self._heap
        members = self.members
        set_aside = []
        found = None
        while heap:
            neg_free, name = heap[0]
            if members.get(name) != -neg_free:
                heapq.heappop(heap)  # stale
            elif name in exclude:
                set_aside.append(heapq.heappop(heap))
            else:
                found = name
                break
        for entry in set_aside:
            heapq.heappush(heap, entry)
        return found

    def unusable_reasons(self) -> list[str]:
        return sorted(self.reasons)

    def _push(self, free: int, name: str) -> None:
        heap = self._heap
        heapq.heappush(heap, (-free, name))
        if len(heap) > 2 * len(self.members) + 32:  # mostly stale: rebuild, O(1) amortized
            heap[:] = [(-f, n) for n, f in self.members.items() if f > 0]
            heapq.heapify(heap)

    def snapshot(self) -> dict[str, Any]:
        """Figures for tests and debugging."""
        return {
            "nodes": len(self.members),
            "usable": self.usable,
            "total": self.total,
            "free": self.free,
            "heap": len(self._heap),
        }


class Partition:
    """The nodes offering one slice type, split by *which* of several reaches admit them.

    ``reaches`` are reach keys (:func:`reach_key`), in a fixed order; a node's *class* is
    a tuple of booleans, one per reach: does that reach admit the node. Each class keeps
    its own :class:`SliceIndex` (free counts and the node to grant), so a decision can
    ask "the best free node among those exactly these reaches cover" in O(log N) per
    class (:mod:`.reach` uses it to keep narrow tiers servable). Nodes no reach admits
    are not kept.
    """

    __slots__ = ("classes", "kind", "of", "reaches")

    def __init__(self, kind: SliceType, reaches: tuple[tuple, ...]) -> None:
        self.kind = kind
        self.reaches = reaches
        #: class -> the index of its nodes (kept once made, even when it empties)
        self.classes: dict[tuple[bool, ...], SliceIndex] = {}
        self.of: dict[str, tuple[bool, ...]] = {}  # node name -> its class

    def add(self, node: NodeInfo, admitted: tuple[bool, ...], free: int) -> None:
        if not any(admitted):
            return
        index = self.classes.get(admitted)
        if index is None:
            index = self.classes[admitted] = SliceIndex(self.kind, ("class", admitted))
        index.add(node, free)
        self.of[node.name] = admitted

    def remove(self, node: NodeInfo) -> None:
        admitted = self.of.pop(node.name, None)
        if admitted is not None:
            self.classes[admitted].remove(node)

    def update(self, name: str, free: int) -> None:
        admitted = self.of.get(name)
        if admitted is not None:
            self.classes[admitted].update(name, free)


class Indexes:
    """Every :class:`SliceIndex` of one cache, by (slice type, reach), built on first use;
    and every :class:`Partition`, by (slice type, reaches)."""

    __slots__ = ("_by_key", "_by_kind", "_parts", "_parts_by_kind", "_reaches")

    def __init__(self) -> None:
        self._reaches: dict[tuple, tuple[Mapping[str, str], tuple]] = {}
        self._by_key: dict[tuple[SliceType, tuple], SliceIndex] = {}
        self._by_kind: dict[SliceType, list[SliceIndex]] = defaultdict(list)
        self._parts: dict[tuple[SliceType, tuple], Partition] = {}
        self._parts_by_kind: dict[SliceType, list[Partition]] = defaultdict(list)

    def __bool__(self) -> bool:
        return bool(self._by_key) or bool(self._parts)

    def node_removed(self, node: NodeInfo) -> None:
        for kind in node.offers:
            for index in self._by_kind.get(kind, ()):
                index.remove(node)
            for part in self._parts_by_kind.get(kind, ()):
                part.remove(node)

    def node_added(self, node: NodeInfo, free: Callable[[NodeInfo, SliceType], int]) -> None:
        for kind in node.offers:
            for index in self._by_kind.get(kind, ()):
                selector, tolerations = self._reaches[index.reach]
                if node.admits(selector, tolerations) is None:
                    index.add(node, free(node, kind))
            for part in self._parts_by_kind.get(kind, ()):
                part.add(node, self._admitted(node, part.reaches), free(node, kind))

    def free_changed(self, name: str, kind: SliceType, free: int) -> None:
        for index in self._by_kind.get(kind, ()):
            index.update(name, free)
        for part in self._parts_by_kind.get(kind, ()):
            part.update(name, free)

    def _admitted(self, node: NodeInfo, reaches: tuple[tuple, ...]) -> tuple[bool, ...]:
        return tuple(node.admits(*self._reaches[key]) is None for key in reaches)

    def partition(
        self,
        kind: SliceType,
        reaches: Iterable[tuple[Mapping[str, str], Any]],
        offering: Callable[[], Iterable[NodeInfo]],
        free: Callable[[NodeInfo, SliceType], int],
    ) -> Partition:
        """The :class:`Partition` of ``kind`` by ``reaches`` ((node selector, tolerations)
        pairs); built from ``offering()`` on first use, O(those nodes x reaches), then O(1)."""
        keys = []
        for selector, tolerations in reaches:
            key = reach_key(selector, tolerations)
            if key not in self._reaches:
                self._reaches[key] = (dict(selector), tuple(tolerations))
            keys.append(key)
        part_key = (kind, tuple(keys))
        part = self._parts.get(part_key)
        if part is None:
            part = self._parts[part_key] = Partition(kind, tuple(keys))
            for node in offering():
                part.add(node, self._admitted(node, part.reaches), free(node, kind))
            self._parts_by_kind[kind].append(part)
        return part

    def get(
        self,
        kind: SliceType,
        node_selector: Mapping[str, str],
        tolerations,
        offering: Callable[[], Iterable[NodeInfo]],
        free: Callable[[NodeInfo, SliceType], int],
    ) -> SliceIndex:
        """The index of ``kind`` over the nodes this reach admits; built from ``offering()``
        (the nodes offering ``kind``) on first use, O(those nodes), then O(1)."""
        key = reach_key(node_selector, tolerations)
        index = self._by_key.get((kind, key))
        if index is not None:
            return index
        if key not in self._reaches:
            self._reaches[key] = (dict(node_selector), tuple(tolerations))
        selector, tolerations = self._reaches[key]
        index = SliceIndex(kind, key)
        for node in offering():
            if node.admits(selector, tolerations) is None:
                index.add(node, free(node, kind))
        self._by_key[(kind, key)] = index
        self._by_kind[kind].append(index)
        return index
