"""Reach and coverage: which tiers can use which slots; placement that keeps narrow tiers servable.

A tier's *reach* is the set of slots -- (node name, MIG resource) pairs -- its chain can
use: the slice types of its fallback chain it may be granted (the first step; later steps
only if it falls back, within ``max_fallback_steps``), on the nodes its ``node_selector``
and ``tolerations`` admit, whether those nodes are usable right now or not. A slot's
*coverage* is the number of the policy's tiers whose reach holds it.

The rule (issue 20, item 9): when several nodes can give a tier its slice, grant from the
one that the fewest *other* tiers' reaches cover; ties keep the older order (most free,
then by name). So a tier without a node selector takes a slice on a node only it and its
like can use before it takes the last slice a pool-only tier could have. The same rule
orders the waiting lines: when a freed slice could serve several tiers, the narrowest
tier (:func:`narrowness`: the fewest slices in its reach) is served first
(:func:`serve_order`).

Two ways to the same answer:

- :func:`tier_reach`, :func:`coverage`, :func:`narrowness`: straightforward, O(nodes x
  tiers), cached per cluster version (``nodes_version``: pod events change no reach) and
  by the tier's or the policy's value. For the waiting line, the CLI, tests.
- :func:`grant_node`: what a decision uses, O(classes x log N). The nodes offering a
  slice type are split by which of the policy's distinct reaches admit them
  (:class:`~.index.Partition`, kept by the cache's events); a class's coverage for a slice
  type is the sum, over the reaches admitting it, of the tiers with that reach whose chain
  uses the type. ``tests/core/test_reach.py`` checks it against :func:`coverage`.

Pure: standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .chains import tier_chain
from .index import reach_key
from .memo import VersionMemo
from .nodes import SliceType
from .policy import Policy, Tier

#: (node name, resource), e.g. ("gpu-1", "nvidia.com/mig-1g.10gb")
Slot = tuple[str, str]

_KINDS = VersionMemo()  # per nodes version, by tier
_REACH = VersionMemo()  # per nodes version, by tier
_COVERAGE = VersionMemo()  # per nodes version, by policy
_NARROW = VersionMemo()  # per nodes version, by policy
_PLANS = VersionMemo()  # per nodes version, by policy
_ORDERS = VersionMemo()  # per nodes version, by (policy, tier, slice type)


def usable_kinds(tier: Tier, state: Any) -> tuple[SliceType, ...]:
    """The slice types of ``tier``'s chain it may be granted, in chain order."""
    view = state.snapshot()

    def compute() -> tuple[SliceType, ...]:
        kinds: list[SliceType] = []
        for step, types in enumerate(tier_chain(tier, view)):
            if step > 0 and not tier.fallback:
                break
            if step > 0 and tier.max_fallback_steps is not None and step > tier.max_fallback_steps:
                break
            kinds.extend(types)
        return tuple(kinds)

    return _KINDS.get(view.nodes_key, tier, compute)


def tier_reach(tier: Tier, state: Any) -> frozenset[Slot]:
    """Every (node, resource) slot ``tier``'s chain can use, by labels and taints.

    Unusable nodes (cordoned, NotReady) are in the reach: it says where the tier *can*
    go, which a node's readiness does not change. Cached per nodes version and tier.
    """
    view = state.snapshot()

    def compute() -> frozenset[Slot]:
        return frozenset(
            (node.name, kind.resource)
            for kind in usable_kinds(tier, view)
            for node in view.nodes_offering(kind)
            if node.admits(tier.node_selector, tier.tolerations) is None
        )

    return _REACH.get(view.nodes_key, tier, compute)


def coverage(policy: Policy, state: Any) -> Mapping[Slot, int]:
    """Slot -> how many of the policy's tiers reach it (slots no tier reaches are absent)."""
    view = state.snapshot()

    def compute() -> Mapping[Slot, int]:
        counts: dict[Slot, int] = {}
        for tier in policy.tiers.values():
            for slot in tier_reach(tier, view):
                counts[slot] = counts.get(slot, 0) + 1
        return MappingProxyType(counts)

    return _COVERAGE.get(view.nodes_key, policy, compute)


def narrowness(policy: Policy, state: Any) -> Mapping[str, int]:
    """Tier slug -> the slices its reach holds (free or not, on usable nodes or not).

    The smaller, the narrower the tier: the fewer slices it could ever be given. The
    waiting line uses it to decide which line a freed slice serves first when several
    could (:func:`serve_order`): the narrower tier first, as :func:`grant_node` keeps the
    narrower tiers' slices for them.
    """
    view = state.snapshot()

    def compute() -> Mapping[str, int]:
        nodes = view.nodes
        out: dict[str, int] = {}
        for slug, tier in policy.tiers.items():
            total = 0
            for name, resource in tier_reach(tier, view):
                node = nodes[name]
                total += node.offers.get(node.resources[resource], 0)
            out[slug] = total
        return MappingProxyType(out)

    return _NARROW.get(view.nodes_key, policy, compute)


def serve_order(policy: Policy, state: Any, slugs: Iterable[str]) -> list[str]:
    """``slugs`` (tiers with someone waiting whom a freed slice could serve), in the order
    the freed slice serves them: the narrowest first (:func:`narrowness`), ties in the
    admin's order of tiers. Slugs the policy does not know come last, in the given order."""
    narrow = narrowness(policy, state)
    order = {slug: i for i, slug in enumerate(policy.tiers)}
    unknown = len(order)
    return sorted(
        slugs,
        key=lambda s: (s not in narrow, narrow.get(s, 0), order.get(s, unknown)),
    )


# --------------------------------------------------------------------------- the grant


@dataclass(frozen=True)
class _Plan:
    """The policy's distinct reaches, and per slice type how many tiers of each use it."""

    reaches: tuple[tuple[Mapping[str, str], tuple], ...]  # (node selector, tolerations)
    keys: tuple[tuple, ...]  # reach_key() of each
    weights: Mapping[SliceType, tuple[int, ...]]  # per reach: tiers using the type


def _plan(policy: Policy, view: Any) -> _Plan:
    def compute() -> _Plan:
        reaches: list[tuple[Mapping[str, str], tuple]] = []
        keys: list[tuple] = []
        weights: dict[SliceType, list[int]] = {}
        for tier in policy.tiers.values():
            key = reach_key(tier.node_selector, tier.tolerations)
            if key not in keys:
                keys.append(key)
                reaches.append((dict(tier.node_selector), tuple(tier.tolerations)))
            at = keys.index(key)
            for kind in usable_kinds(tier, view):
                per = weights.setdefault(kind, [])
                per.extend([0] * (at + 1 - len(per)))
                per[at] += 1
        n = len(keys)
        return _Plan(
            tuple(reaches),
            tuple(keys),
            {kind: tuple(per + [0] * (n - len(per))) for kind, per in weights.items()},
        )

    return _PLANS.get(view.nodes_key, policy, compute)


def _grant_order(policy: Policy, tier: Tier, kind: SliceType, view: Any) -> tuple | None:
    """The classes of nodes ``tier`` reaches for ``kind``, grouped by coverage, fewest
    first: ((coverage, (SliceIndex, ...)), ...); None if the policy lacks the tier's reach."""

    def compute() -> tuple | None:
        plan = _plan(policy, view)
        key = reach_key(tier.node_selector, tier.tolerations)
        if key not in plan.keys:
            return None
        at = plan.keys.index(key)
        weights = plan.weights.get(kind, (0,) * len(plan.keys))
        part = view.slice_partition(kind, plan.reaches)
        groups: dict[int, list] = {}
        for admitted, index in part.classes.items():
            if admitted[at]:
                cover = sum(w for w, yes in zip(weights, admitted, strict=True) if yes)
                groups.setdefault(cover, []).append(index)
        return tuple((cover, tuple(groups[cover])) for cover in sorted(groups))

    return _ORDERS.get(view.nodes_key, (policy, tier, kind), compute)


def grant_node(
    tier: Tier,
    kind: SliceType,
    policy: Policy | None,
    state: Any,
    exclude: frozenset[str] = frozenset(),
) -> str | None:
    """The node to grant ``tier`` a ``kind`` on: of the usable reachable nodes with one
    free (and not in ``exclude``), one the fewest tiers reach for ``kind``; then the most
    free, then by name. None if none is free.

    Without a policy, or for a tier whose reach the policy lacks: the most free, then by
    name (the tier's own :class:`~.index.SliceIndex`).
    """
    view = state.snapshot()
    order = _grant_order(policy, tier, kind, view) if policy is not None else None
    if order is None:
        return view.slice_index(kind, tier.node_selector, tier.tolerations).best(exclude)
    for _cover, indexes in order:
        found: tuple[int, str] | None = None
        for index in indexes:
            name = index.best(exclude)
            if name is not None:
                candidate = (-index.members[name], name)
                if found is None or candidate < found:
                    found = candidate
        if found is not None:
            return found[1]
    return None


__all__ = [
    "Slot",
    "coverage",
    "grant_node",
    "narrowness",
    "serve_order",
    "tier_reach",
    "usable_kinds",
]
