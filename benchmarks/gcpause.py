"""Decision latency with Python's cyclic garbage collector running, in a hub-sized heap.

The other decision figures (:mod:`benchmarks.decisions`) run on a heap that holds little
besides the cluster state. A hub holds much more: the state of every node and pod
(50,000 pods at 5,000 nodes), KubeSpawner's pod reflector (the raw JSON of every
single-user pod), JupyterHub's users and spawners. A full (generation-2) collection
walks every tracked object, so its pause grows with that heap, and it runs whenever
enough objects have survived since the last one -- during a decision or during the watch
event before it, both on the hub's one event loop.

Here the heap is built as a hub's: the modules a hub imports (JupyterHub, KubeSpawner,
their dependencies), the cluster state from the first list, then the reflector's copy of
the hub's pods (each a pod as KubeSpawner creates it, as the API
returns it). Then many loop steps, each one pod watch event (decoded from JSON as the
watch does, so it allocates what a real event allocates) followed by one decision, are
timed per step and per decision, while ``gc.callbacks`` times every collection of every
generation. Modes, in the same process on the same heap:

* ``gc_off``: ``gc.disable()`` -- the floor (no cyclic collection at all);
* ``gc_on``: Python's defaults, as a hub runs today;
* ``frozen``: ``gc.freeze()`` after the first list (the heap built so far moves to the
  permanent generation, which collections never walk), default thresholds;
* ``frozen_threshold``: the same plus a larger generation-0 threshold (fewer young
  collections, each walking more).

Each mode starts with ``gc.collect()`` so that it starts from the same collector state.
Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import bisect
import copy
import gc
import json
import random
import statistics
import time

from mig_spawner.core.admission import SpawnRequest, decide
from mig_spawner.core.cluster import MODIFIED

from . import synthetic
from .decisions import GROUPS, build

MODES = ("gc_off", "gc_on", "frozen", "frozen_threshold")
#: the rest of the hub, per loop step: objects that live a while (a request's handler,
#: an ORM session's rows, a spawner's progress events) -- kept for ``HUB_KEEP`` steps, so
#: they survive into the oldest generation and then die, as a hub's do -- half of them in
#: reference cycles (only the cyclic collector frees those)
HUB_OBJECTS_PER_STEP = 40
HUB_KEEP = 2000
#: generation-0 threshold of the ``frozen_threshold`` mode (CPython's default is 700)
THRESHOLD0 = 10_000


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def reflector_pod(obj: dict, i: int) -> dict:
    """``obj`` as KubeSpawner's pod reflector holds it: the whole pod as the API returns it
    (KubeSpawner's manifest: env, volumes, security context; the API's managedFields,
    conditions, container statuses)."""
    pod = copy.deepcopy(obj)
    meta = pod["metadata"]
    meta.update(
        resourceVersion=str(1000 + i),
        creationTimestamp="2026-12-06T20:00:00Z",
        generateName=None,
        managedFields=[
            {
                "manager": manager,
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2026-12-06T20:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {f"f:{k}": {} for k in meta["labels"]}}},
            }
            for manager in ("kubespawner", "kubelet")
        ],
    )
    container = pod["spec"]["containers"][0]
    container.update(
        image="quay.io/jupyter/pytorch-notebook:cuda12-2024-12-09",
        args=["jupyterhub-singleuser"],
        env=[{"name": f"JUPYTERHUB_VAR_{k}", "value": f"value-{i}-{k}"} for k in range(16)],
        ports=[{"name": "notebook-port", "containerPort": 8888, "protocol": "TCP"}],
        volumeMounts=[{"name": "home", "mountPath": "/home/jovyan"}],
        securityContext={"allowPrivilegeEscalation": False, "runAsUser": 1000},
    )
    pod["spec"].update(
        volumes=[{"name": "home", "persistentVolumeClaim": {"claimName": f"claim-{i}"}}],
        tolerations=[
            {"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            for k in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
        ],
        restartPolicy="OnFailure",
        securityContext={"fsGroup": 100},
    )
    pod["status"] = {
        "phase": "Running",
        "podIP": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
        "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": "2026-12-06T20:00:01Z"}
            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
        ],
        "containerStatuses": [
            {
                "name": "main",
                "ready": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2026-12-06T20:00:01Z"}},
                "image": container["image"],
            }
        ],
    }
    return pod


def _import_the_hub() -> bool:
    """Import what a hub process imports (JupyterHub, KubeSpawner, SQLAlchemy, tornado,
    kubernetes_asyncio, mig-spawner's hub): their modules, classes and functions are most
    of a hub's tracked objects before it holds any state (~300,000 in the storm's hub)."""
    try:
        import jupyterhub.app  # noqa: F401
        import kubespawner.spawner  # noqa: F401

        import mig_spawner.hub.spawner  # noqa: F401
    except ImportError:  # the benchmark still runs on the core alone
        return False
    return True


def hub_heap(n_nodes: int) -> dict:
    """A hub's modules, the cluster state after the first list, and the reflector's copy
    of the hub's pods."""
    hub_imported = _import_the_hub()
    node_objs = synthetic.nodes(n_nodes)
    pod_objs = synthetic.pods(node_objs)
    gc.collect()
    before_state = len(gc.get_objects())
    state = build(node_objs, pod_objs)
    policy = synthetic.policy()
    for tier in synthetic.TIERS:  # first use builds each index
        decide(SpawnRequest(user="u0", tier=tier, groups=GROUPS), policy, state)
    gc.collect()
    state_objects = len(gc.get_objects()) - before_state
    reflector = {
        p["metadata"]["name"]: reflector_pod(p, i)
        for i, p in enumerate(pod_objs)
        if p["metadata"]["namespace"] == "jhub"
    }
    # the watch's events arrive as JSON text; decoding one allocates what the watch does
    events = [json.dumps(p) for p in pod_objs]
    return {
        "nodes": node_objs,
        "pods": pod_objs,
        "state": state,
        "policy": policy,
        "reflector": reflector,
        "events": events,
        "users": synthetic.n_users(node_objs),
        "hub_imported": hub_imported,
        "state_objects": state_objects,
    }


class _Pauses:
    """Every collection's generation and wall time, through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.started = self.started_cpu = 0.0
        self.events: list[tuple[int, float, float]] = []  # (generation, start, end)
        self.cpu: list[float] = []  # each pause's CPU time (the machine is shared)

    def __call__(self, phase: str, info: dict) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        if phase == "start":
            self.started, self.started_cpu = now, cpu
        else:
            self.events.append((info["generation"], self.started, now))
            self.cpu.append(cpu - self.started_cpu)


def _summary(us: list[float]) -> dict:
    return {
        "n": len(us),
        "p50_us": statistics.median(us),
        "p99_us": _pct(us, 0.99),
        "p999_us": _pct(us, 0.999),
        "max_us": max(us),
    }


def _hub_work(i: int) -> list:
    """What the rest of the hub allocates in one loop step (see ``HUB_OBJECTS_PER_STEP``)."""
    kept = []
    for k in range(HUB_OBJECTS_PER_STEP // 2):
        a = {"request": i, "k": k, "headers": [("x", str(k))]}
        a["self"] = a  # a cycle, as a tornado handler and its request hold each other
        kept.append(a)
    return kept


def time_full_collections(n: int = 3) -> list[float]:
    """``gc.collect()`` on this heap, CPU milliseconds: what one generation-2 pause costs."""
    out = []
    for _ in range(n):
        t = time.thread_time()
        gc.collect()
        out.append((time.thread_time() - t) * 1000)
    return out


def run_mode(heap: dict, mode: str, steps: int, seed: int = 11) -> dict:
    rng = random.Random(seed)
    state, policy, events, users = heap["state"], heap["policy"], heap["events"], heap["users"]
    tiers = list(synthetic.TIERS)
    old_threshold = gc.get_threshold()
    gc.enable()
    gc.collect()
    if mode == "gc_off":
        gc.disable()
    elif mode in ("frozen", "frozen_threshold"):
        gc.freeze()
        if mode == "frozen_threshold":
            gc.set_threshold(THRESHOLD0, old_threshold[1], old_threshold[2])
    pauses = _Pauses()
    gc.callbacks.append(pauses)
    decide_s, decide_cpu_s, step_s = [], [], []
    windows = []  # (start, end) of each decision, to tell which ones a pause fell in
    ring: list = [None] * HUB_KEEP
    try:
        for i in range(steps):
            ring[i % HUB_KEEP] = _hub_work(i)
            text = events[rng.randrange(len(events))]
            t0 = time.perf_counter()
            obj = json.loads(text)
            obj["status"] = {"phase": "Running", "podIP": f"10.1.{i % 250}.{rng.randrange(250)}"}
            state.apply_pod_event(MODIFIED, obj)
            req = SpawnRequest(
                user=f"user{rng.randrange(users)}", tier=tiers[i % len(tiers)], groups=GROUPS
            )
            c = time.thread_time()
            t1 = time.perf_counter()
            decide(req, policy, state)
            t2 = time.perf_counter()
            decide_cpu_s.append(time.thread_time() - c)
            decide_s.append(t2 - t1)
            step_s.append(t2 - t0)
            windows.append((t1, t2))
    finally:
        gc.callbacks.remove(pauses)
        gc.set_threshold(*old_threshold)
        gc.unfreeze()
        gc.enable()
    decide_us = [x * 1e6 for x in decide_s]
    step_us = [x * 1e6 for x in step_s]
    per_gen = {}
    for gen in (0, 1, 2):
        lengths = [(e - s) * 1e6 for g, s, e in pauses.events if g == gen]
        cpu = [
            c * 1e6 for (g, _s, _e), c in zip(pauses.events, pauses.cpu, strict=True) if g == gen
        ]
        per_gen[str(gen)] = {
            "count": len(lengths),
            "cpu_median_us": statistics.median(cpu) if cpu else 0.0,
            "cpu_max_us": max(cpu) if cpu else 0.0,
            "median_us": statistics.median(lengths) if lengths else 0.0,
            "max_us": max(lengths) if lengths else 0.0,
            "total_ms": sum(lengths) / 1000,
        }
    # which decisions had a collection inside them (each pause lies in at most one window)
    hit = [0] * steps
    hit_gen2 = [0] * steps
    starts = [w[0] for w in windows]
    for gen, s, _e in pauses.events:
        k = bisect.bisect_right(starts, s) - 1
        if k >= 0 and s <= windows[k][1]:
            hit[k] = 1
            if gen == 2:
                hit_gen2[k] = 1
    p99 = _pct(decide_us, 0.99)
    tail = [k for k, v in enumerate(decide_us) if v >= p99]
    return {
        "mode": mode,
        "steps": steps,
        "threshold0": THRESHOLD0 if mode == "frozen_threshold" else old_threshold[0],
        "decide": _summary(decide_us),
        "decide_cpu": _summary([x * 1e6 for x in decide_cpu_s]),
        "step": _summary(step_us),
        "collections": per_gen,
        "decisions_with_a_collection": sum(hit),
        "decisions_with_a_gen2_collection": sum(hit_gen2),
        "tail_decisions": len(tail),
        "tail_decisions_with_a_collection": sum(hit[k] for k in tail),
    }


def bench_gc(n_nodes: int = 5000, steps: int = 30_000, modes=MODES) -> dict:
    t = time.perf_counter()
    heap = hub_heap(n_nodes)
    build_s = time.perf_counter() - t
    gc.collect()
    tracked = len(gc.get_objects())
    out = {
        "nodes": n_nodes,
        "pods": len(heap["pods"]),
        "reflector_pods": len(heap["reflector"]),
        "hub_modules_imported": heap["hub_imported"],
        "cluster_state_tracked_objects": heap["state_objects"],
        "tracked_objects": tracked,
        "heap_build_s": build_s,
        "full_collection_ms": time_full_collections(),
        "hub_objects_per_step": HUB_OBJECTS_PER_STEP,
        "hub_keep_steps": HUB_KEEP,
        "modes": {},
    }
    gc.freeze()
    out["full_collection_ms_frozen"] = time_full_collections()
    gc.unfreeze()
    print(
        f"  gc: {out['pods']} pods + {out['reflector_pods']} reflector pods, "
        f"{tracked:,} tracked objects ({heap['state_objects']:,} of them the cluster "
        "state); gc.collect() takes "
        f"{statistics.median(out['full_collection_ms']):.0f} ms "
        f"({statistics.median(out['full_collection_ms_frozen']):.1f} ms after gc.freeze())",
        flush=True,
    )
    for mode in modes:
        r = run_mode(heap, mode, steps)
        out["modes"][mode] = r
        gen2 = r["collections"]["2"]
        print(
            f"  gc {mode:<17} decide p50 {r['decide']['p50_us']:.0f} us, p99 "
            f"{r['decide']['p99_us']:.0f} us, max {r['decide']['max_us'] / 1000:.1f} ms "
            f"(CPU p99 {r['decide_cpu']['p99_us']:.0f} us, max "
            f"{r['decide_cpu']['max_us'] / 1000:.1f} ms); "
            f"step p99 {r['step']['p99_us']:.0f} us, max {r['step']['max_us'] / 1000:.1f} ms; "
            f"gen-2: {gen2['count']} x median {gen2['median_us'] / 1000:.1f} ms "
            f"(max {gen2['max_us'] / 1000:.1f} ms, CPU {gen2['cpu_median_us'] / 1000:.1f} ms); "
            "gen-0/1: "
            f"{r['collections']['0']['count']}/{r['collections']['1']['count']}; "
            f"{r['tail_decisions_with_a_collection']}/{r['tail_decisions']} of the p99 tail "
            "had a collection inside",
            flush=True,
        )
    out["verdict"] = verdict(out)
    return out


def verdict(out: dict) -> dict:
    """Do the collector's pauses dominate the decision's p99 (and the loop step's max)?"""
    m = out["modes"]
    off, on = m.get("gc_off"), m.get("gc_on")
    if not (off and on):
        return {}
    v = {
        "decide_p99_ratio_on_vs_off": on["decide"]["p99_us"] / off["decide"]["p99_us"],
        "decide_cpu_p99_ratio_on_vs_off": on["decide_cpu"]["p99_us"] / off["decide_cpu"]["p99_us"],
        "step_max_ratio_on_vs_off": on["step"]["max_us"] / off["step"]["max_us"],
        "tail_share_with_a_collection": on["tail_decisions_with_a_collection"]
        / max(on["tail_decisions"], 1),
        "gen2_max_ms": on["collections"]["2"]["max_us"] / 1000,
    }
    # "dominate": more than half of the slowest 1 % of decisions had a collection inside
    v["pauses_dominate_p99"] = v["tail_share_with_a_collection"] > 0.5
    if "frozen" in m:
        fr = m["frozen"]
        v["frozen_gen2_max_ms"] = fr["collections"]["2"]["max_us"] / 1000
        v["decide_p99_ratio_frozen_vs_on"] = fr["decide"]["p99_us"] / on["decide"]["p99_us"]
        v["step_max_ratio_frozen_vs_on"] = fr["step"]["max_us"] / on["step"]["max_us"]
    return v


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 30_000
    print(json.dumps(bench_gc(n, steps), indent=1))
