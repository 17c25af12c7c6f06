"""The spawn storm beside plain KubeSpawner: the same cluster, the same users, one run.

Three storms, each on a fresh emulated cluster of the same spec and a fresh hub:

1. ``mig-spawner``: every user spawns at once (the storm of :mod:`benchmarks.storm`);
   the team quotas admit some and refuse the rest.
2. ``kubespawner``: plain KubeSpawner with :data:`benchmarks.storm.PROFILES` (one
   profile per tier, the tier's preferred slice as ``extra_resource_limits``). It has no
   quotas, so sending it every user would put pods on the cluster that mig-spawner
   refused (and, past the 1g slices, pods that wait Pending until ``start_timeout``).
   Like for like, it spawns exactly the users mig-spawner admitted in (1): the same
   number of spawns reaches the cluster, each for the same slice.
3. ``mig-spawner, like for like``: mig-spawner again with only those users, so that
   both planes do the same work (no refusals in either). Skipped when (1) refused
   nobody: then (1) is already like for like.

The ratios mig-spawner / KubeSpawner (spawns per second, longest event-loop stall, hub
CPU seconds) compare (3) with (2). Each hub samples its own loop (:mod:`benchmarks.hubprobe`),
so mig-spawner's share of the loop's busy time is read from the same runs.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys

from .storm import run_storm

RATIOS = ("spawns_per_s", "longest_loop_stall_ms", "hub_cpu_s")


def _brief(r: dict) -> dict:
    """A storm's figures without the long lists (kept in the JSON, not the table)."""
    return {k: v for k, v in r.items() if k not in ("ready_users", "slow_callbacks_by_place_ms")}


def _share(r: dict, package: str) -> float:
    return ((r.get("hub_profile") or {}).get("share_of_busy_loop") or {}).get(package, 0.0)


async def run_pair(n_users: int = 300, n_nodes: int = 24, quota: int = 40) -> dict:
    mig = await run_storm(n_users, n_nodes=n_nodes, quota=quota)
    admitted = mig["ready_users"]
    ks = await run_storm(n_users, n_nodes=n_nodes, quota=quota, plane="kubespawner", only=admitted)
    if mig["refused_by_post"] or mig["refused_after_202"]:
        lfl = await run_storm(n_users, n_nodes=n_nodes, quota=quota, only=admitted)
    else:
        lfl = mig
    ratios = {}
    for key in RATIOS:
        a, b = lfl.get(key), ks.get(key)
        ratios[key] = a / b if a is not None and b else math.nan
    return {
        "users": n_users,
        "like_for_like": (
            "KubeSpawner and the second mig-spawner storm spawn exactly the users the first "
            "mig-spawner storm admitted (same spawns reaching the cluster, same slice each)"
        ),
        "admitted_by_mig_spawner": len(admitted),
        "mig_spawner": mig,
        "kubespawner": ks,
        "mig_spawner_like_for_like": lfl,
        "ratios_mig_over_kubespawner": ratios,
        "mig_spawner_share_of_busy_loop": _share(lfl, "mig_spawner"),
        "mig_spawner_share_of_busy_loop_full_storm": _share(mig, "mig_spawner"),
    }


def report(pair: dict) -> None:
    print("storm pair (mig-spawner beside plain KubeSpawner):", flush=True)
    rows = (
        ("mig-spawner, every user", pair["mig_spawner"]),
        ("kubespawner, admitted users", pair["kubespawner"]),
        ("mig-spawner, admitted users", pair["mig_spawner_like_for_like"]),
    )
    for name, r in rows:
        prof = r.get("hub_profile") or {}
        gen2 = (prof.get("gc") or {}).get("2", {})
        print(
            f"  {name:<28} {r['users']:>4} spawned: {r['ready']:>4} ready, "
            f"{r['refused_by_post'] + r['refused_after_202']:>4} refused, "
            f"{r['still_pending_at_timeout']} pending; {r['spawns_per_s']:.2f} spawns/s, "
            f"stall {r['longest_loop_stall_ms'] or 0:.0f} ms, hub CPU {r['hub_cpu_s']:.1f} s, "
            f"mig-spawner {_share(r, 'mig_spawner') * 100:.1f} % of the busy loop, "
            f"gen-2 GC {gen2.get('count', 0)} x max {gen2.get('max_ms', 0):.0f} ms; "
            f"double-booked {r['double_booked_slices']}, overshoot "
            f"{r['quota_overshoot_compute_slices']}",
            flush=True,
        )
    ratios = pair["ratios_mig_over_kubespawner"]
    print(
        "  mig-spawner / KubeSpawner (like for like): "
        + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()),
        flush=True,
    )


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    result = asyncio.run(run_pair(n))
    report(result)
    print(json.dumps({k: _brief(v) if isinstance(v, dict) else v for k, v in result.items()}))
