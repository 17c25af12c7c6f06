"""``mig-spawner advise`` and ``demand``: MIG layouts from the demand the hub recorded.

1. Read the demand (hub logs or JSON lines; :mod:`mig_spawner.core.demand`) and the cluster
   (a snapshot or the live cluster, as ``status`` reads it).
2. Each node's current per-GPU layout: its advertised slices drawn on its GPUs with the
   catalog's placements (:func:`mig_spawner.core.slicemap.gpu_layout`).
3. Candidate layouts: the MILP of :mod:`.advise_solver` over every valid layout, at two
   time resolutions, plus the current layout.
4. Each candidate is replayed through the hub's own decision code
   (:mod:`mig_spawner.core.replay`); the advice is the one serving the most requests, then
   with the least mean wait, then changing fewest nodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..core.catalog import GPUModel, default_catalog, parse_profile_name
from ..core.demand import ParseResult, parse_lines
from ..core.layouts import Layout, enumerate_layouts, mig_parted_config, node_config
from ..core.nodes import NodeInfo
from ..core.policy import Policy
from ..core.replay import (
    MIG_CONFIG_LABEL,
    ReplayResult,
    Requests,
    build_cluster,
    profile_policy,
    relayout_node,
    replay,
    to_requests,
)
from ..core.slicemap import GPU_COUNT_LABEL, gpu_layout
from .advise_solver import NodeVar, Problem, Solution, solve
from .snapshot import InputError, Snapshot, build_state

CONFIGMAP_NAME = "mig-spawner-mig-parted-config"
CONFIGMAP_NAMESPACE = "gpu-operator"


def read_demand(paths: list[str]) -> ParseResult:
    result = ParseResult()
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                parse_lines(f, source=path, result=result)
        except OSError as e:
            raise InputError(f"cannot read demand file {path}: {e.strerror or e}") from None
    return result


# --------------------------------------------------------------------------- the cluster


@dataclass
class NodePlan:
    name: str
    model: GPUModel | None
    current: list[Layout]
    raw: dict[str, Any]
    config_label: str | None
    kept: str | None = None  # why it may not change
    advised: list[Layout] = field(default_factory=list)
    config: str | None = None
    entries: list[dict] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.kept is None and self.advised != self.current


def current_layouts(node: NodeInfo, model: GPUModel) -> list[Layout] | None:
    """The node's advertised MIG slices drawn on its ``nvidia.com/gpu.count`` GPUs."""
    items = []
    for kind in node.offers:
        profile = model.profile(kind.profile)
        if kind.strategy != "mixed" or profile is None or not profile.placements:
            return None
        starts = tuple(s for s, _ in profile.placements)
        items += [(profile.name, model.memory_slices, profile.memory_slices, starts)] * node.offers[
            kind
        ]
    label = node.labels.get(GPU_COUNT_LABEL, "")
    gpus = int(label) if label.isdecimal() and int(label) > 0 else None
    if gpus is None:
        return None
    drawn = gpu_layout(tuple(items), gpus) if items else ()
    if drawn is None:
        return None
    per_gpu: list[dict[str, int]] = [{} for _ in range(gpus)]
    for g, name, _start, _size in drawn:
        per_gpu[g][name] = per_gpu[g].get(name, 0) + 1
    return [Layout.of(model, counts) for counts in per_gpu]


def plan_nodes(snapshot: Snapshot) -> tuple[list[NodePlan], list[str]]:
    state, warnings = build_state(snapshot)
    raw = {(o.get("metadata") or {}).get("name"): o for o in snapshot.nodes}
    busy = {p.node for p in state.pods.values() if p.active and p.node and p.requests}
    plans = []
    for name in sorted(state.nodes):
        node = state.nodes[name]
        product = next((k.product for k in node.offers if k.product), "")
        model = default_catalog().model_for_product(product) if product else None
        if model is None or not node.offers:
            continue  # not a GPU node we know: nothing to advise
        current = current_layouts(node, model)
        plan = NodePlan(name, model, current or [], raw[name], node.labels.get(MIG_CONFIG_LABEL))
        if current is None:
            plan.kept = "not a mixed-strategy MIG node with known placements"
        elif name in busy:
            plan.kept = "running GPU pods"
        plans.append(plan)
    return plans, warnings


def check_profiles(demand: ParseResult, plans: list[NodePlan]) -> list[str]:
    """An unknown profile for a record's GPU model is an error; one no model has, a warning."""
    warnings = []
    models = {p.model.key: p.model for p in plans if p.model}
    for where, rec in zip(demand.where, demand.records, strict=True):
        if not rec.gpu or rec.profile == "whole-gpu":
            continue
        model = default_catalog().model_for_product(rec.gpu)
        if model is not None and model.profile(rec.profile) is None:
            names = ", ".join(p.name for p in model.profiles)
            raise InputError(
                f"{where}: {rec.profile} is not a MIG profile of {model.display_name} "
                f"({rec.gpu}); its profiles: {names}"
            )
    for profile in sorted({r.profile for r in demand.records}):
        if profile != "whole-gpu" and not any(m.profile(profile) for m in models.values()):
            names = ", ".join(m.display_name for m in models.values()) or "none"
            warnings.append(
                f"profile {profile} is not a profile of any GPU model in the cluster ({names});"
                " replayed by its size"
            )
    return warnings


# --------------------------------------------------------------------------- the problem


def peaks(requests: Requests, windows: int) -> list[dict[str, int]]:
    """Per window, each tier's peak number of concurrent sessions."""
    reqs = requests.requests
    if not reqs:
        return []
    horizon = max(r.t + r.duration_s for r in reqs) or 1.0
    width = horizon / windows
    events = sorted(
        [(r.t, 1, r.tier) for r in reqs] + [(r.t + r.duration_s, -1, r.tier) for r in reqs]
    )
    out: list[dict[str, int]] = [{} for _ in range(windows)]
    cur: dict[str, int] = {}
    w_prev = 0
    for t, delta, tier in events:
        w = min(int(t / width), windows - 1)
        for between in range(w_prev + 1, w + 1):  # sessions carried into later windows
            for k, n in cur.items():
                out[between][k] = max(out[between].get(k, 0), n)
        w_prev = max(w_prev, w)
        cur[tier] = cur.get(tier, 0) + delta
        if delta > 0:
            out[w][tier] = max(out[w].get(tier, 0), cur[tier])
    return out


def chains(policy: Policy, plans: list[NodePlan], tiers: set[str]) -> dict[str, list]:
    """Each tier's fallback chain over every profile the cluster's models could offer,
    resolved by the hub's own chain code on the real nodes' labels and taints."""
    from ..core.chains import tier_chain

    universe = build_cluster(
        relayout_node(p.raw, [Layout.of(p.model, {q.name: 1 for q in _plain(p.model)})], "universe")
        for p in plans
        if p.model is not None
    )
    out = {}
    for slug in tiers:
        steps = tier_chain(policy.tiers[slug], universe.snapshot())
        entries = []
        for step, kinds in enumerate(steps):
            for kind in kinds:
                model = default_catalog().model_for_product(kind.product)
                profile = model.profile(kind.profile) if model else None
                if profile is not None:
                    entries.append((model.key, profile.name, step))
        out[slug] = entries
    return out


def _plain(model: GPUModel):
    return [p for p in model.profiles if p.placements and not parse_profile_name(p.name).suffix]


# --------------------------------------------------------------------------- advise


@dataclass
class Advice:
    plans: list[NodePlan]
    current: ReplayResult
    advised: ReplayResult
    solutions: list[tuple[int, Solution]]
    chosen: str
    demand: ParseResult
    requests: Requests
    warnings: list[str]

    @property
    def configs(self) -> dict[str, list[dict]]:
        return {p.config: p.entries for p in self.plans if p.changed and p.config}


def replay_plans(plans, layouts: dict[str, list[Layout]], policy, requests, patience):
    nodes = [
        relayout_node(p.raw, layouts[p.name], "replay") if p.name in layouts else p.raw
        for p in plans
    ]
    return replay(build_cluster(nodes), policy, requests.requests, patience_s=patience)


def advise(
    snapshot: Snapshot,
    demand: ParseResult,
    policy: Policy | None,
    *,
    windows: int = 48,
    max_nodes_changed: int | None = None,
    patience: float = 0.0,
    time_limit: float = 60.0,
    search_seconds: float = 30.0,
    exact_up_to: int = 2000,
) -> Advice:
    if not demand.records:
        raise InputError(
            f"no demand records ({demand.ignored} other line(s) ignored, {demand.skipped}"
            " garbled line(s) skipped): nothing to advise from"
        )
    plans, warnings = plan_nodes(snapshot)
    if not plans:
        raise InputError(f"{snapshot.source}: no GPU node with a known GPU model")
    warnings += check_profiles(demand, plans)
    synthetic = policy is None
    if policy is None:
        policy = profile_policy(r.profile for r in demand.records if r.profile != "whole-gpu")
    requests = to_requests(demand.records, None if synthetic else policy)
    if not requests.requests:
        raise InputError(f"no replayable demand: {requests.left_out}")
    current_map = {p.name: p.current for p in plans if p.kept is None}
    current = replay_plans(plans, current_map, policy, requests, patience)
    tiers = {r.tier for r in requests.requests}
    chain_map = chains(policy, plans, tiers)
    profiles = {m: set() for m in {p.model.key for p in plans}}
    for entries in chain_map.values():
        for model, profile, _ in entries:
            profiles.setdefault(model, set()).add(profile)
    layouts = {
        m: enumerate_layouts(default_catalog().model(m), sorted(names) or None)
        for m, names in profiles.items()
    }
    nodes = [NodeVar(p.name, p.model.key, tuple(p.current), p.kept is not None) for p in plans]
    best = (current.served, -current.mean_wait_s, 0)
    best_layouts, best_result, chosen = current_map, current, "current"
    solutions = []
    runs: list[Any] = list(dict.fromkeys((windows, 4 * windows)))
    if len(requests.requests) <= exact_up_to:
        runs.append("sessions")
    for w in runs:
        problem = Problem(nodes, layouts, chain_map, [], max_nodes_changed)
        if w == "sessions":
            problem.sessions = [(r.tier, r.t, r.t + r.duration_s) for r in requests.requests]
        else:
            problem.peaks = peaks(requests, w)
        solution = solve(problem, time_limit=time_limit)
        solutions.append((w, solution))
        result = replay_plans(plans, solution.layouts, policy, requests, patience)
        score = (result.served, -result.mean_wait_s, -len(solution.changed))
        if score > best:
            best, best_layouts, best_result, chosen = score, solution.layouts, result, f"milp-{w}"
    if search_seconds > 0:

        def evaluate(candidate):
            return replay_plans(plans, candidate, policy, requests, patience)

        found = improve(
            plans, best_layouts, best_result, layouts, evaluate, search_seconds, max_nodes_changed
        )
        if found is not None:
            best_layouts, best_result = found
            chosen += "+replay-search"
    for plan in plans:
        plan.advised = list(best_layouts.get(plan.name, plan.current))
    _name_configs(plans)
    return Advice(plans, current, best_result, solutions, chosen, demand, requests, warnings)


def _score(result: ReplayResult, layouts, plans) -> tuple:
    changed = sum(
        1 for p in plans if p.kept is None and layouts.get(p.name, p.current) != p.current
    )
    return (result.served, -round(result.mean_wait_s, 6), -changed)


def improve(plans, start, result, candidates, evaluate, budget_s, max_changed):
    """Local search by replay: change one GPU's layout at a time to another valid one,
    keep any change that serves more (then waits less, then changes fewer nodes), until
    no change helps or ``budget_s`` is spent. None if nothing better was found."""
    deadline = time.monotonic() + budget_s
    best_map = {k: list(v) for k, v in start.items()}
    best_score = _score(result, best_map, plans)
    best_result, improved, progress = result, False, True
    while progress and time.monotonic() < deadline:
        progress = False
        for plan in plans:
            if plan.kept is not None:
                continue
            gpus = best_map.get(plan.name, plan.current)
            tried_at = {lay: g for g, lay in reversed(list(enumerate(gpus)))}
            for g in sorted(tried_at.values()):
                for lay in candidates.get(plan.model.key, []):
                    if lay == gpus[g] or time.monotonic() >= deadline:
                        continue
                    trial = {**best_map, plan.name: [*gpus[:g], lay, *gpus[g + 1 :]]}
                    changed = sum(
                        1
                        for p in plans
                        if p.kept is None and trial.get(p.name, p.current) != p.current
                    )
                    if max_changed is not None and changed > max_changed:
                        continue
                    r = evaluate(trial)
                    score = _score(r, trial, plans)
                    if score > best_score:
                        best_map, best_score, best_result = trial, score, r
                        improved = progress = True
                        gpus = trial[plan.name]
    return (best_map, best_result) if improved else None


def _name_configs(plans: list[NodePlan]) -> None:
    """Config names; a name already used for other contents (e.g. ``all-balanced`` on two
    GPU models) becomes a custom one, so one ConfigMap holds every config."""
    seen: dict[str, list[dict]] = {}
    for plan in plans:
        if not plan.advised:
            continue
        name, entries = node_config(plan.advised)
        if seen.setdefault(name, entries) != entries:
            name = f"{name}-{plan.model.key}"
            seen[name] = entries
        plan.config, plan.entries = name, entries


def commands(advice: Advice) -> list[str]:
    return [
        f"kubectl label node {p.name} {MIG_CONFIG_LABEL}={p.config} --overwrite"
        for p in advice.plans
        if p.changed
    ]


def configmap(advice: Advice) -> dict[str, Any]:
    import yaml

    text = yaml.safe_dump(mig_parted_config(advice.configs), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP_NAME, "namespace": CONFIGMAP_NAMESPACE},
        "data": {"config.yaml": text},
    }


def to_dict(advice: Advice) -> dict[str, Any]:
    def profiles(layouts):
        return [lay.profiles for lay in layouts]

    return {
        "nodes": {
            p.name: {
                "gpu": p.model.display_name if p.model else None,
                "current": profiles(p.current),
                "current_mig_config": p.config_label,
                "layout": profiles(p.advised),
                "mig_config": p.config if p.changed else p.config_label,
                "changed": p.changed,
                "kept": p.kept,
            }
            for p in advice.plans
        },
        "replay": {"current": advice.current.to_dict(), "advised": advice.advised.to_dict()},
        "solver": {
            "method": "MILP over valid placements, scipy.optimize.milp (HiGHS)",
            "chosen": advice.chosen,
            "runs": [
                {
                    "windows": w,
                    "seconds": round(s.seconds, 3),
                    "gap": s.gap,
                    "status": s.status,
                    "variables": s.variables,
                    "constraints": s.constraints,
                }
                for w, s in advice.solutions
            ],
        },
        "demand": {
            "records": len(advice.demand.records),
            "skipped": advice.demand.skipped,
            "problems": advice.demand.problems,
            "replayed": len(advice.requests.requests),
            "left_out": advice.requests.left_out,
        },
        "configmap": configmap(advice),
        "commands": commands(advice),
        "warnings": advice.warnings,
    }
