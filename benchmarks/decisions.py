"""Decision latency, growth, watch events/s, state memory and form render, through the core's API.

Each figure is measured on the synthetic cluster of :mod:`benchmarks.synthetic`. Before
every timed decision one pod event is applied, so no per-version cache helps: what is
timed is a decision on a state that has just changed, as on a busy hub. The naive
figure rebuilds a ClusterState from the full node and pod lists, then decides: what a
spawner that lists the cluster per decision pays.
"""

from __future__ import annotations

import collections
import copy
import gc
import random
import statistics
import time
import tracemalloc

from mig_spawner.core.admission import SpawnRequest, decide
from mig_spawner.core.cluster import ADDED, DELETED, MODIFIED, ClusterState
from mig_spawner.core.form import build_profile_list

from . import synthetic

GROUPS = ("team1", "team2")


def build(node_objs, pod_objs) -> ClusterState:
    state = ClusterState()
    for obj in node_objs:
        state.apply_node_event(ADDED, obj)
    for obj in pod_objs:
        state.apply_pod_event(ADDED, obj)
    return state


def _pct(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def _figures(samples_s) -> dict:
    us = [x * 1e6 for x in samples_s]
    return {"median_us": statistics.median(us), "p99_us": _pct(us, 0.99), "n": len(us)}


def _churn(state: ClusterState, pod_objs, rng) -> None:
    """One pod event: a pod's status changes (bumps the state version, frees nothing)."""
    obj = copy.copy(rng.choice(pod_objs))
    obj["status"] = {"phase": "Running", "podIP": f"10.0.{rng.randrange(255)}.{rng.randrange(255)}"}
    state.apply_pod_event(MODIFIED, obj)


def bench_size(n_nodes: int, *, samples: int, naive_samples: int, seed: int = 7) -> dict:
    rng = random.Random(seed)
    node_objs = synthetic.nodes(n_nodes)
    pod_objs = synthetic.pods(node_objs)
    policy = synthetic.policy()
    state = build(node_objs, pod_objs)
    for tier in synthetic.TIERS:  # first use builds each index (not timed)
        decide(SpawnRequest(user="u0", tier=tier, groups=GROUPS), policy, state)
    per_tier = {}
    users = synthetic.n_users(node_objs)
    gc.collect()
    for tier in synthetic.TIERS:
        times, cpu = [], []
        for _ in range(samples):
            _churn(state, pod_objs, rng)
            req = SpawnRequest(user=f"user{rng.randrange(users)}", tier=tier, groups=GROUPS)
            c = time.thread_time()
            t = time.perf_counter()
            d = decide(req, policy, state)
            times.append(time.perf_counter() - t)
            cpu.append(time.thread_time() - c)
            assert d.admitted, d.message
        per_tier[tier] = _figures(times)
        per_tier[tier]["cpu_p99_us"] = _pct([x * 1e6 for x in cpu], 0.99)
    all_fast = [v["median_us"] for v in per_tier.values()]

    # The decision reads every server of the asking user (issue 10: servers under a scope
    # that no longer applies count too), so the busiest user is timed on its own.
    held = collections.Counter(p.user for p in state.pods.values() if p.managed)
    busiest, busiest_servers = held.most_common(1)[0]
    heavy = []
    for i in range(samples):
        _churn(state, pod_objs, rng)
        tier = list(synthetic.TIERS)[i % len(synthetic.TIERS)]
        t = time.perf_counter()
        decide(SpawnRequest(user=busiest, tier=tier, groups=GROUPS), policy, state)
        heavy.append(time.perf_counter() - t)

    naive = []
    for i in range(naive_samples):
        tier = list(synthetic.TIERS)[i % len(synthetic.TIERS)]
        t = time.perf_counter()
        fresh = build(node_objs, pod_objs)
        decide(SpawnRequest(user="u1", tier=tier, groups=GROUPS), policy, fresh)
        naive.append(time.perf_counter() - t)
        del fresh

    # form render for one user in two teams, after a change (uncached) and repeated (cached)
    form, cached = [], []
    for i in range(max(samples // 10, 5)):
        _churn(state, pod_objs, rng)
        t = time.perf_counter()
        build_profile_list(policy, state, user=f"user{i}", groups=GROUPS)
        form.append(time.perf_counter() - t)
        t = time.perf_counter()
        build_profile_list(policy, state, user=f"user{i}", groups=GROUPS)
        cached.append(time.perf_counter() - t)
    return {
        "nodes": n_nodes,
        "gpus": n_nodes * 8,
        "pods": len(pod_objs),
        "decide": per_tier,
        "users": users,
        "decide_median_us": statistics.median(all_fast),
        "busiest_user_servers": busiest_servers,
        "decide_busiest_user": _figures(heavy),
        "decide_p99_us_worst_tier": max(v["p99_us"] for v in per_tier.values()),
        "decide_cpu_p99_us_worst_tier": max(v["cpu_p99_us"] for v in per_tier.values()),
        "naive": _figures(naive),
        "form": _figures(form),
        "form_cached": _figures(cached),
    }


def bench_events(n_nodes: int, n_events: int = 20_000, seed: int = 9) -> dict:
    """Pod events applied per second (ADDED/MODIFIED/DELETED mix) and node heartbeats."""
    rng = random.Random(seed)
    node_objs = synthetic.nodes(n_nodes)
    pod_objs = synthetic.pods(node_objs)
    policy = synthetic.policy()
    state = build(node_objs, pod_objs)
    for tier in synthetic.TIERS:  # indexes exist: the events must keep them up to date
        decide(SpawnRequest(user="u0", tier=tier, groups=GROUPS), policy, state)
    events = []
    for _ in range(n_events):
        obj = rng.choice(pod_objs)
        kind = rng.random()
        if kind < 0.4:
            events.append((DELETED, obj))
            events.append((ADDED, obj))
        else:
            events.append((MODIFIED, obj))
    t = time.perf_counter()
    for event_type, obj in events:
        state.apply_pod_event(event_type, obj)
    pod_rate = len(events) / (time.perf_counter() - t)
    beats = [rng.choice(node_objs) for _ in range(min(n_events, 5000))]
    t = time.perf_counter()
    for obj in beats:
        state.apply_node_event(MODIFIED, obj)
    node_rate = len(beats) / (time.perf_counter() - t)
    return {"nodes": n_nodes, "pod_events_per_s": pod_rate, "node_heartbeats_per_s": node_rate}


def bench_memory(n_nodes: int) -> dict:
    node_objs = synthetic.nodes(n_nodes)
    pod_objs = synthetic.pods(node_objs)
    policy = synthetic.policy()
    gc.collect()
    tracemalloc.start()
    state = build(node_objs, pod_objs)
    for tier in synthetic.TIERS:
        decide(SpawnRequest(user="u0", tier=tier, groups=GROUPS), policy, state)
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"nodes": n_nodes, "pods": len(pod_objs), "state_mb": current / 2**20}
