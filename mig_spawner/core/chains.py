"""Fallback chains: which slice types can serve a tier, in the order they are tried.

A tier resolves against the slice types present in the cluster to an ordered chain:
the smallest adequate type first (by compute slices, then memory), across GPU models,
up to the tier's ceiling. Types with the same profile name on different GPU models form
one *step*: moving between them is not a fallback, moving to the next step is.
"""

from __future__ import annotations

from collections.abc import Iterable

from .memo import VersionMemo
from .nodes import NodeInfo, SliceType
from .policy import Tier
from .snapshot import Snapshot

#: chains per (cache, nodes_version) and tier: pod events do not change a chain
_CHAINS = VersionMemo()


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


def tier_chain(tier: Tier, view: Snapshot) -> list[list[SliceType]]:
    """The tier's chain over the slice types its nodes (by selector and taints) offer.

    Cached per cache and ``nodes_version`` (pod events do not change it), keyed by the
    tier's value; callers must not modify the lists returned.
    """

    def compute() -> list[list[SliceType]]:
        kinds = [
            k
            for k in view.slice_types()
            if view.slice_index(k, tier.node_selector, tier.tolerations).members
        ]
        return resolve_chain(tier, kinds)

    return _CHAINS.get(view.nodes_key, tier, compute)
