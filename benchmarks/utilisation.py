"""Utilisation on a seeded trace: no fallback, fallback chains, fallback + quotas, and the optimum.

A fixed small cluster (4 H100s in different MIG layouts) and a seeded trace of arrivals
and session lengths over a mix of tiers are replayed through the real admission code
(``admission.admit``; a departure releases its reservation). Three policies:

- ``fixed``: every tier on its exact profile and no fallback (KubeSpawner's profile_list
  as people use it);
- ``fallback``: the tiers' fallback chains;
- ``fallback+quotas``: the same with per-team compute-slice quotas.

The optimum knows the whole trace in advance: a mixed-integer program (scipy.optimize
.milp, HiGHS) assigns each request to at most one adequate slice type of its tier's
chain, never more sessions on a type than it has slices at any arrival time (and, with
quotas, never more than a team's quota), maximising the sessions admitted.
"""

from __future__ import annotations

import random

from mig_spawner.core.admission import SpawnRequest, admit
from mig_spawner.core.chains import tier_chain
from mig_spawner.core.cluster import ADDED, ClusterState
from mig_spawner.core.policy import build_policy
from mig_spawner.demo.emulator.clusterfile import load_cluster_spec
from mig_spawner.demo.emulator.nodelabels import node_object

H100 = "NVIDIA-H100-80GB-HBM3"
CLUSTER = [
    ["1g.10gb"] * 7,
    ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"],
    ["3g.40gb", "3g.40gb"],
    ["7g.80gb"],
]
TIERS = {
    "notebook": {
        "display_name": "1g",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "max_compute_slices": 3,
    },
    "medium": {"display_name": "2g", "compute_slices": 2, "min_memory_gb": 20},
    "training": {"display_name": "3g", "compute_slices": 3, "min_memory_gb": 40},
    "full": {"display_name": "7g", "compute_slices": 7},
}
MIX = [("notebook", 0.55), ("medium", 0.2), ("training", 0.17), ("full", 0.08)]
TEAMS = ("vision", "nlp")
QUOTAS = {"vision": {"compute_slices": 14}, "nlp": {"compute_slices": 10}}


def cluster_state() -> ClusterState:
    spec = load_cluster_spec(
        {
            "nodes": [
                {"name": f"h{i}", "gpu": H100, "strategy": "mixed", "mig": [layout]}
                for i, layout in enumerate(CLUSTER)
            ]
        }
    )
    state = ClusterState()
    for s in spec.nodes:
        state.apply_node_event(ADDED, node_object(s))
    return state


def trace(n: int = 160, seed: int = 3, horizon: float = 100.0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r, acc = rng.random(), 0.0
        tier = MIX[-1][0]
        for name, p in MIX:
            acc += p
            if r < acc:
                tier = name
                break
        start = rng.uniform(0, horizon)
        out.append(
            {
                "id": i,
                "user": f"u{i % 40}",
                "team": TEAMS[i % 2],
                "tier": tier,
                "start": start,
                "end": start + rng.expovariate(1 / 12.0),
            }
        )
    return sorted(out, key=lambda r: r["start"])


def policy(mode: str):
    tiers = {k: dict(v) for k, v in TIERS.items()}
    if mode == "fixed":
        for v in tiers.values():
            v["fallback"] = False
    return build_policy(
        tiers=tiers, team_quotas=QUOTAS if mode == "fallback+quotas" else {t: {} for t in TEAMS}
    )


def replay(mode: str, requests: list[dict]) -> dict:
    state = cluster_state()
    pol = policy(mode)
    capacity = sum(
        k.compute_slices * n for node in state.nodes.values() for k, n in node.offers.items()
    )
    horizon = max(r["end"] for r in requests)
    events = [(r["start"], 1, r) for r in requests] + [(r["end"], 0, r) for r in requests]
    admitted, slice_time, fallbacks = set(), 0.0, 0
    for _, is_arrival, r in sorted(events, key=lambda e: (e[0], e[1])):
        key = f"jhub/{r['id']}"
        if not is_arrival:
            state.forget(key)
            continue
        d = admit(
            SpawnRequest(user=r["user"], tier=r["tier"], groups=(r["team"],), team=r["team"]),
            pol,
            state,
            pod_key=key,
        )
        if d.admitted:
            admitted.add(r["id"])
            slice_time += d.granted.compute_slices * (r["end"] - r["start"])
            fallbacks += d.fallback
    return {
        "mode": mode,
        "requests": len(requests),
        "admitted": len(admitted),
        "admitted_pct": 100 * len(admitted) / len(requests),
        "turned_away": len(requests) - len(admitted),
        "fallbacks": fallbacks,
        "mean_slice_utilisation_pct": 100 * slice_time / (capacity * horizon),
    }


def optimum(requests: list[dict], *, quotas: bool, state: ClusterState | None = None) -> dict:
    """The exact optimum on ``state`` (default: this benchmark's 4-H100 cluster)."""
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp

    state = state or cluster_state()
    pol = policy("fallback+quotas" if quotas else "fallback")
    counts: dict = {}
    for node in state.nodes.values():
        for k, n in node.offers.items():
            counts[k] = counts.get(k, 0) + n
    kinds = sorted(counts, key=lambda k: k.sort_key)
    var = []  # (request index, kind index)
    for i, r in enumerate(requests):
        for step in tier_chain(pol.tiers[r["tier"]], state.snapshot()):
            for k in step:
                var.append((i, kinds.index(k)))
    nv = len(var)
    rows, lo, hi = [], [], []

    def row(coeffs, upper):
        v = np.zeros(nv)
        for j, c in coeffs:
            v[j] = c
        rows.append(v)
        lo.append(-np.inf)
        hi.append(upper)

    by_req: dict = {}
    for j, (i, _) in enumerate(var):
        by_req.setdefault(i, []).append(j)
    for _i, js in by_req.items():
        row([(j, 1) for j in js], 1)
    for t_req in requests:  # at each arrival time, what is running
        t = t_req["start"]
        active = {i for i, r in enumerate(requests) if r["start"] <= t < r["end"]}
        for ki, _ in enumerate(kinds):
            js = [j for j, (i, k) in enumerate(var) if k == ki and i in active]
            if js:
                row([(j, 1) for j in js], counts[kinds[ki]])
        if quotas:
            for team, q in QUOTAS.items():
                js = [
                    (j, kinds[k].compute_slices)
                    for j, (i, k) in enumerate(var)
                    if i in active and requests[i]["team"] == team
                ]
                if js:
                    row(js, q["compute_slices"])
    res = milp(
        c=-np.ones(nv),
        constraints=LinearConstraint(np.array(rows), lo, hi),
        integrality=np.ones(nv),
        bounds=Bounds(0, 1),
        options={"time_limit": 60},
    )
    assert res.success, res.message
    return {
        "admitted": round(-res.fun),
        "status": res.message,
        "variables": nv,
        "constraints": len(rows),
    }


def run(n: int = 160, seed: int = 3) -> dict:
    requests = trace(n, seed)
    modes = {m: replay(m, requests) for m in ("fixed", "fallback", "fallback+quotas")}
    best = optimum(requests, quotas=False)
    best_q = optimum(requests, quotas=True)
    modes["fixed"]["vs_optimum"] = modes["fixed"]["admitted"] / best["admitted"]
    modes["fallback"]["vs_optimum"] = modes["fallback"]["admitted"] / best["admitted"]
    modes["fallback+quotas"]["vs_optimum"] = (
        modes["fallback+quotas"]["admitted"] / best_q["admitted"]
    )
    return {
        "trace": {"requests": n, "seed": seed},
        "modes": modes,
        "optimum": best,
        "optimum_with_quotas": best_q,
    }
