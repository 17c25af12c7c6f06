"""``mig-spawner explain``: a decision from files, not a live hub, and its rendering.

The loaders live in :mod:`mig_spawner.cli.snapshot` (cluster snapshots) and
:mod:`mig_spawner.cli.hubconfig` (``jupyterhub_config.py``); both are re-exported here.
:func:`render_report` and :func:`render_catalog` produce the CLI's human-readable text.
Nothing here prints or exits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..core.admission import (
    FORBIDDEN_TIER,
    NO_MATCHING_GPU,
    UNKNOWN_TIER,
    Decision,
    SpawnRequest,
    decide,
)
from ..core.catalog import Catalog
from ..core.cluster import ClusterState
from ..core.policy import Policy, Tier
from ..core.reach import tier_reach
from .hubconfig import (
    POLICY_SETTINGS,
    groups_from_config,
    load_config,
    load_groups,
    load_helm_values,
    load_hub_config,
    parse_groups,
    policy_from_config,
    trust_from_config,
)
from .snapshot import (
    SNAPSHOT_HINT,
    InputError,
    Snapshot,
    build_state,
    load_snapshot,
    parse_snapshot,
)

__all__ = [
    "POLICY_SETTINGS",
    "SNAPSHOT_HINT",
    "Explanation",
    "InputError",
    "Snapshot",
    "build_state",
    "explain",
    "groups_from_config",
    "load_config",
    "load_groups",
    "load_helm_values",
    "load_hub_config",
    "load_snapshot",
    "parse_groups",
    "parse_snapshot",
    "policy_from_config",
    "render_catalog",
    "render_report",
]


# --------------------------------------------------------------------------- explain


@dataclass
class Explanation:
    """One ``explain`` run: the decision, the policy and request behind it, and warnings."""

    decision: Decision
    policy: Policy
    request: SpawnRequest
    warnings: list[str]
    state: ClusterState

    def to_dict(self) -> dict[str, Any]:
        """``Decision.to_dict()`` plus ``warnings``: what ``explain --json`` prints."""
        return {**self.decision.to_dict(), "warnings": list(self.warnings)}


def explain(
    *,
    cluster: str | None = None,
    config: str | Sequence[str],
    user: str,
    tier: str,
    groups: Sequence[str] | None = None,
    team: str | None = None,
    stdin: BinaryIO | None = None,
    snapshot: Snapshot | None = None,
) -> Explanation:
    """Load ``cluster`` and ``config`` and decide what ``user`` would get for ``tier``.

    ``config`` is a ``jupyterhub_config.py`` or a list of Helm values files, merged in
    order and read as the chart's hub reads them (:func:`load_helm_values`).
    ``groups=None`` takes the user's groups from the config's ``load_groups``.
    ``snapshot`` (e.g. :func:`mig_spawner.cli.live.load_live`) replaces the ``cluster`` file.
    Raises :class:`InputError` for unusable input; a refusal is a decision, not an error.
    """
    paths = [config] if isinstance(config, str) else list(config)
    hub_config = load_hub_config(paths)
    source = ", ".join(paths)
    policy = policy_from_config(hub_config, source=source, files=paths)
    if groups is None:
        groups = groups_from_config(hub_config, user, source=source, files=paths)
    if snapshot is None:
        if cluster is None:
            raise InputError("no cluster given: pass a snapshot file or read the live cluster")
        snapshot = load_snapshot(cluster, stdin=stdin)
    state, warnings = build_state(snapshot, trust_from_config(hub_config))
    request = SpawnRequest(user=user, tier=tier, groups=tuple(groups), team=team or None)
    return Explanation(decide(request, policy, state), policy, request, warnings, state)


# --------------------------------------------------------------------------- rendering


def _tier_summary(tier: Tier) -> str:
    size = f"{tier.compute_slices}g"
    if tier.max_compute_slices != tier.compute_slices:
        size += f" to {tier.max_compute_slices}g"
    parts = [size, f">= {tier.min_memory_gb:g} GB"]
    if not tier.fallback:
        parts.append("no fallback")
    elif tier.max_fallback_steps is not None:
        parts.append(f"fallback up to {tier.max_fallback_steps} step(s)")
    else:
        parts.append("fallback")
    if tier.chain is not None:
        parts.append(f"chain {', '.join(tier.chain)}")
    if tier.groups:
        parts.append(f"for {', '.join(sorted(tier.groups))}")
    return ", ".join(parts)


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        (indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))).rstrip()
        for row in rows
    ]


def render_report(exp: Explanation) -> str:
    """The human-readable ``explain`` report: tier, team, chain walked, verdict, message."""
    d, req = exp.decision, exp.request
    tier = exp.policy.tier(d.tier)
    lines = []
    if tier is not None:
        lines.append(f"Tier:     {tier.slug} ({tier.display_name}): {_tier_summary(tier)}")
    else:
        lines.append(f"Tier:     {req.tier} (not defined)")
    groups = ", ".join(req.groups) if req.groups else "none"
    lines.append(f"User:     {req.user} (groups: {groups})")
    if d.team or req.team:
        team = d.team or req.team
    elif d.code in (UNKNOWN_TIER, FORBIDDEN_TIER):
        team = "-"
    else:
        team = "none: the personal default quota applies"
    lines.append(f"Team:     {team}")
    if d.candidates:
        lines.append("Chain walked:")
        rows = [["step", "profile", "GPU", "free/total", "outcome", "reason"]]
        rows += [
            [
                str(c.step),
                c.slice_type.profile,
                c.slice_type.gpu_name,
                f"{c.free}/{c.total}",
                c.outcome,
                c.reason,
            ]
            for c in d.candidates
        ]
        lines += _table(rows)
    elif d.code == NO_MATCHING_GPU:
        lines.append("Chain walked: (empty: no slice type in the cluster fits this tier)")
    if d.admitted and d.granted is not None:
        how = " (fallback)" if d.fallback else ""
        lines.append(
            f"Verdict:  ADMITTED{how}: {d.granted.label} (node {d.node}),"
            f" resource {d.granted.resource}"
        )
        selector = ", ".join(f"{k}={v}" for k, v in d.node_selector.items())
        if selector:
            lines.append(f"Selector: {selector}")
        lines.append(f"Node:     {_why_node(exp)}")
    else:
        lines.append(f"Verdict:  REFUSED ({d.code})")
    if d.kueue_room is not None:  # Kueue mode: the ClusterQueue holds the quota
        lines.append(f"Kueue:    {d.kueue_room.describe()}")
    elif d.quota is not None:
        q = d.quota.to_dict(d.charge_mode)
        limit = "no limit" if q["limit"] is None else f"limit {q['limit']}"
        lines.append(
            f"Quota:    {q['unit']}: {q['used']} used, {limit}, this server needs"
            f" {q['needed']} (charged as {q['charge']})"
        )
    lines.append(f"Message:  {d.message}")
    return "\n".join(lines)


def _why_node(exp: Explanation) -> str:
    """Why the decision's node: the tiers that can use its slot (core/reach.py's rule)."""
    d = exp.decision
    slot = (d.node, d.granted.resource)
    users = [t.slug for t in exp.policy.tiers.values() if slot in tier_reach(t, exp.state)]
    return (
        f"{d.node}: {len(users)} of {len(exp.policy.tiers)} tier(s) can use its"
        f" {d.granted.profile} ({', '.join(users)}); a grant goes where the fewest can"
    )


def _mib(value: int | None) -> str:
    return "?" if value is None else f"{value} MiB"


def _opt(value: int | None) -> str:
    return "?" if value is None else str(value)


def render_catalog(catalog: Catalog) -> str:
    """Every GPU model with its products and profiles, as readable tables."""
    out: list[str] = []
    for model in catalog:
        if out:
            out.append("")
        memory = f", {_mib(model.memory_mib)}" if model.memory_mib else ""
        out.append(
            f"{model.display_name} [{model.key}]: {model.compute_slices} compute /"
            f" {model.memory_slices} memory slices{memory}"
        )
        out.append(f"  products: {', '.join(model.products)}")
        rows = [["profile", "g", "memory", "SMs", "max", "resource"]]
        rows += [
            [
                p.name,
                str(p.compute_slices),
                f"{p.memory_gb} GB ({_mib(p.memory_mib)})",
                _opt(p.sm_count),
                _opt(p.max_instances),
                p.resource,
            ]
            for p in model.profiles
        ]
        out += _table(rows)
    return "\n".join(out)
