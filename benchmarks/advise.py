"""``mig-spawner advise`` on the seeded trace, and the solver's time at 100 and 1,000 GPUs.

1. The utilisation benchmark's seeded trace and 4-H100 cluster (``utilisation.py``): the
   requests served when the trace is replayed through ``admission.admit`` (fallback
   chains, no waiting) on the current layout, on the advised one, and the exact optimum
   of the current layout (the MILP that knows the whole trace in advance). The exact
   optimum of the advised layout is printed too: what the layout itself makes possible.
2. The advisor on synthetic clusters of N nodes × 8 H100s (mixed layouts) with 40 requests
   per GPU over 8 hours (sessions of 1 hour on average): MILP time at both resolutions and
   the whole advice (replays included).

    python -m benchmarks.advise [--quick]
"""

from __future__ import annotations

import argparse
import random
import time

from mig_spawner.cli.advise import advise, plan_nodes
from mig_spawner.cli.snapshot import parse_snapshot
from mig_spawner.core.cluster import ADDED, ClusterState
from mig_spawner.core.demand import DemandRecord, ParseResult
from mig_spawner.core.replay import relayout_node
from mig_spawner.demo.emulator.clusterfile import load_cluster_spec
from mig_spawner.demo.emulator.nodelabels import node_object

from . import synthetic, utilisation

PROFILE = {"notebook": "1g.10gb", "medium": "2g.20gb", "training": "3g.40gb", "full": "7g.80gb"}


def _snapshot(nodes: list[dict]):
    items = [{**node_object(s), "kind": "Node"} for s in load_cluster_spec({"nodes": nodes}).nodes]
    return parse_snapshot(items, source="benchmark")


def _demand(requests: list[dict]) -> ParseResult:
    records = [
        DemandRecord(
            t=r["start"],
            profile=PROFILE[r["tier"]],
            duration_s=r["end"] - r["start"],
            tier=r["tier"],
            team=r["team"],
            user=r["user"],
        )
        for r in requests
    ]
    return ParseResult(records=records, where=[f"trace:{i}" for i in range(len(records))])


def seeded(n: int, seed: int = 3, search_seconds: float = 30.0) -> dict:
    requests = utilisation.trace(n, seed)
    snap = _snapshot(
        [
            {"name": f"h{i}", "gpu": utilisation.H100, "strategy": "mixed", "mig": [layout]}
            for i, layout in enumerate(utilisation.CLUSTER)
        ]
    )
    started = time.perf_counter()
    advice = advise(
        snap, _demand(requests), utilisation.policy("fallback"), search_seconds=search_seconds
    )
    seconds = time.perf_counter() - started
    optimum = utilisation.optimum(requests, quotas=False)
    plans, _ = plan_nodes(snap)
    raw = {p.name: p.raw for p in plans}
    advised_nodes = [relayout_node(raw[p.name], p.advised, "advised") for p in advice.plans]
    state = ClusterState()
    for obj in advised_nodes:
        state.apply_node_event(ADDED, obj)
    optimum_advised = utilisation.optimum(requests, quotas=False, state=state)
    return {
        "requests": n,
        "seed": seed,
        "current_served": advice.current.served,
        "advised_served": advice.advised.served,
        "optimum_current_layout": optimum["admitted"],
        "optimum_advised_layout": optimum_advised["admitted"],
        "advised_layout": {p.name: [str(lay) for lay in p.advised] for p in advice.plans},
        "chosen": advice.chosen,
        "advise_seconds": seconds,
    }


def scale(gpus: int, per_gpu: int = 10, seed: int = 7) -> dict:
    rng = random.Random(seed)
    nodes = []
    for i in range((gpus + 7) // 8):
        n = min(8, gpus - 8 * i)  # the last node takes the rest: exactly ``gpus`` GPUs
        nodes.append(
            {
                "name": f"gpu-{i:04d}",
                "gpu": synthetic.H100,
                "gpus": n,
                "strategy": "mixed",
                "mig": [synthetic.LAYOUTS[(i + g) % len(synthetic.LAYOUTS)] for g in range(n)],
            }
        )
    snap = _snapshot(nodes)
    horizon = 8 * 3600.0
    requests = []
    for i in range(gpus * per_gpu):
        r = rng.random()
        tier = (
            "notebook" if r < 0.55 else "medium" if r < 0.75 else "training" if r < 0.92 else "full"
        )
        start = rng.uniform(0, horizon)
        requests.append(
            {
                "start": start,
                "end": start + rng.expovariate(1 / 3600),
                "tier": tier,
                "team": synthetic.TEAMS[i % len(synthetic.TEAMS)],
                "user": f"u{i}",
            }
        )
    policy = utilisation.policy("fallback")
    started = time.perf_counter()
    advice = advise(snap, _demand(requests), policy, search_seconds=0)
    total = time.perf_counter() - started
    return {
        "gpus": gpus,
        "nodes": len(nodes),
        "requests": len(requests),
        "milp": [
            {
                "windows": w,
                "seconds": s.seconds,
                "gap": s.gap,
                "variables": s.variables,
                "constraints": s.constraints,
            }
            for w, s in advice.solutions
        ],
        "advise_seconds": total,
        "current_served": advice.current.served,
        "advised_served": advice.advised.served,
    }


def _runs(windows) -> str:
    return "per session" if windows == "sessions" else f"{windows} windows"


def run(quick: bool = False) -> dict:
    out: dict = {"seeded": [], "scale": []}
    for n in [40] if quick else [100, 160]:
        r = seeded(n, search_seconds=2 if quick else 30)
        out["seeded"].append(r)
        print(
            f"advise, seeded trace of {n}: served current {r['current_served']}, advised "
            f"{r['advised_served']}, exact optimum of the current layout "
            f"{r['optimum_current_layout']} (of the advised layout "
            f"{r['optimum_advised_layout']}); {r['advise_seconds']:.1f} s",
            flush=True,
        )
    for gpus in [16] if quick else [100, 1000]:
        r = scale(gpus, per_gpu=2 if quick else 40)
        out["scale"].append(r)
        milp = ", ".join(
            f"{_runs(m['windows'])} {m['seconds']:.2f} s (gap {100 * m['gap']:.2g} %, "
            f"{m['variables']} vars)"
            for m in r["milp"]
        )
        print(
            f"advise at {gpus} GPUs ({r['requests']} requests): MILP {milp}; whole advice "
            f"{r['advise_seconds']:.1f} s; served {r['current_served']} -> {r['advised_served']}",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
