"""Benchmark the operations views on a large synthetic cluster; prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_operations.py [--nodes 500] [--pods 5000] [--repeat 5]

Measures, on one ClusterState of NODES H100 nodes (8 GPUs each, mig-parted all-balanced:
32 slices a node) holding PODS hub pods: the slice map of every node (the layout search is
cached per node shape, so first and later calls are reported apart), the capacity and team
rows, one /hub/metrics scrape of mig-spawner's collector, and the GPU slice page's live
fragment (services/mig) rendered for one page of 25 nodes and for every node.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CollectorRegistry, generate_latest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mig_spawner.core import slicemap  # noqa: E402
from mig_spawner.core.cluster import ADDED  # noqa: E402
from mig_spawner.core.policy import build_policy  # noqa: E402
from mig_spawner.hub import adminpage, metrics  # noqa: E402
from mig_spawner.hub.watch import ClusterView  # noqa: E402

H100 = "NVIDIA-H100-80GB-HBM3"
BALANCED = {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}  # per GPU
TEAMS = [f"team-{i}" for i in range(20)]


class _NoAPI:
    list_node = list_pod_for_all_namespaces = None


def node(name: str, gpus: int = 8) -> dict:
    alloc = {f"nvidia.com/mig-{p}": str(n * gpus) for p, n in BALANCED.items()}
    return {
        "metadata": {
            "name": name,
            "labels": {"nvidia.com/gpu.product": H100, "nvidia.com/gpu.count": str(gpus)},
        },
        "status": {"allocatable": alloc, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def pod(i: int, node_name: str, profile: str) -> dict:
    team = TEAMS[i % len(TEAMS)]
    return {
        "metadata": {
            "name": f"jupyter-u{i}",
            "namespace": "jhub",
            "labels": {
                "mig-spawner/user": f"u{i}",
                "mig-spawner/team": team,
                "mig-spawner/tier": "notebook",
                "mig-spawner/profile": profile,
            },
            "annotations": {"mig-spawner/requested-profile": "1g.10gb"},
        },
        "spec": {
            "nodeName": node_name,
            "containers": [
                {"name": "n", "resources": {"limits": {f"nvidia.com/mig-{profile}": "1"}}}
            ],
        },
        "status": {"phase": "Running"},
    }


def timed(fn, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000, max(samples) * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    view = ClusterView(_NoAPI())
    state = view.state
    names = [f"gpu-{i:04}" for i in range(args.nodes)]
    for name in names:
        state.apply_node_event(ADDED, node(name))
    per_node = {p: n * 8 for p, n in BALANCED.items()}
    placed = 0
    for i in range(min(args.pods, args.nodes * sum(per_node.values()))):
        name = names[i % args.nodes]
        k = (i // args.nodes) % sum(per_node.values())
        profile = "1g.10gb" if k < per_node["1g.10gb"] else "2g.20gb" if k < 24 else "3g.40gb"
        state.apply_pod_event(ADDED, pod(i, name, profile))
        placed += 1
    policy = build_policy(
        tiers={"notebook": {"display_name": "1g", "compute_slices": 1}},
        team_quotas={t: {"compute_slices": 400, "servers": 300} for t in TEAMS},
    )
    slicemap.gpu_layout.cache_clear()
    t = time.perf_counter()
    maps = slicemap.node_maps(state)
    first = (time.perf_counter() - t) * 1000
    cells = sum(len(g.cells) for m in maps for g in m.gpus)
    print(f"cluster: {args.nodes} nodes, {args.nodes * 8} GPUs, {cells} slices, {placed} pods")
    print(f"node_maps (all nodes), first call (layout search): {first:8.1f} ms")
    med, worst = timed(lambda: slicemap.node_maps(state), args.repeat)
    print(
        f"node_maps (all nodes), cached layouts:            {med:8.1f} ms median, {worst:.1f} max"
    )
    med, worst = timed(
        lambda: (slicemap.capacity(state), slicemap.team_rows(policy, state)), args.repeat
    )
    print(
        f"capacity + team rows:                             {med:8.1f} ms median, {worst:.1f} max"
    )

    registry = CollectorRegistry()
    registry.register(metrics.ClusterCollector(lambda: (view, policy)))
    size = len(generate_latest(registry))
    med, worst = timed(lambda: generate_latest(registry), args.repeat)
    label = f"/hub/metrics collector scrape ({size / 1024:.0f} KiB):"
    print(f"{label:<49} {med:8.1f} ms median, {worst:.1f} max")

    env = Environment(loader=FileSystemLoader(adminpage.TEMPLATES), autoescape=select_autoescape())
    live = env.get_template(adminpage.LIVE_TEMPLATE)

    def render(per_page):
        data = adminpage.page_data(view, policy, per_page=per_page)
        return live.render(data=data, bar=adminpage._bar, states=())

    for per_page in (25, adminpage.MAX_PER_PAGE):
        html = render(per_page)
        med, worst = timed(lambda pp=per_page: render(pp), args.repeat)
        print(
            f"/services/mig fragment, {per_page:3} nodes a page ({len(html) / 1024:5.0f} KiB):   "
            f"{med:8.1f} ms median, {worst:.1f} max"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
