"""Fallback chains: which slice types can serve a tier, in the order they are tried.

A tier resolves against the slice types present in the cluster to an ordered chain:
the smallest adequate type first (by compute slices, then memory), across GPU models,
up to the tier's ceiling. Types with the same profile name on different GPU models form
one *step*: moving between them is not a fallback, moving to the next step is.
"""

from __future__ import annotations

from collections.abc import Iterable

from .cluster import ClusterState
from .nodes import NodeInfo, SliceType
from .policy import Tier


def adequate(tier: Tier, kind: SliceType) -> bool:
    """Meets the tier's minimums and stays under its ceiling."""
    return (
        kind.compute_slices >= tier.compute_slices
        and kind.memory_gb >= tier.min_memory_gb
        and kind.compute_slices <= tier.max_compute_slices
    )


def reachable(tier: Tier, nodes: Iterable[NodeInfo]) -> list[NodeInfo]:
    """Nodes a pod of this tier may land on by labels and taints (readiness aside)."""
    return [n for n in nodes if n.admits(tier.node_selector, tier.tolerations) is None]


def resolve_chain(tier: Tier, kinds: Iterable[SliceType]) -> list[list[SliceType]]:
    """The tier's chain as steps: ``[[1g.10gb on A100, 1g.10gb on H100], [2g.20gb ...], ...]``.

    ``kinds`` are the slice types this tier can reach. With ``fallback_chains`` set for
    the tier, only the listed profiles are used, in the admin's order.
    """
    candidates = [k for k in kinds if adequate(tier, k)]
    if tier.chain is not None:
        order = {profile: i for i, profile in enumerate(tier.chain)}
        candidates = [k for k in candidates if k.profile in order]
        candidates.sort(key=lambda k: (order[k.profile], k.sort_key))
    else:
        candidates.sort(key=lambda k: k.sort_key)
    steps: list[list[SliceType]] = []
    for kind in candidates:
        if steps and steps[-1][0].profile == kind.profile:
            steps[-1].append(kind)
        else:
            steps.append([kind])
    return steps


def tier_chain(tier: Tier, state: ClusterState) -> list[list[SliceType]]:
    """The tier's chain over the slice types its nodes (by selector and taints) offer.

    Cached per ``state.nodes_version`` (pod events do not change it); callers must not
    modify the lists returned.
    """
    cache = state.chain_cache
    hit = cache.get(id(tier))
    if hit is not None and hit[0] is tier and hit[1] == state.nodes_version:
        return hit[2]
    kinds = [
        k
        for k in state.slice_types()
        if state.slice_index(k, tier.node_selector, tier.tolerations).members
    ]
    chain = resolve_chain(tier, kinds)
    if len(cache) > 512:  # policies rebuilt many times: forget old tiers
        cache.clear()
    cache[id(tier)] = (tier, state.nodes_version, chain)
    return chain
