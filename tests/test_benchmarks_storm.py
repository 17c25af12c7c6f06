"""The storm beside plain KubeSpawner runs both planes (structure only: no timing asserted).

Ten users through two real ``jupyterhub`` processes (MIGSpawner, then plain KubeSpawner
with the equivalent ``profile_list``) on fresh emulated clusters of the same spec; the
team quota is 2 slices so that mig-spawner refuses some and the like-for-like run of
mig-spawner (only the users it admitted) runs too.
"""

from __future__ import annotations

import asyncio
import math

from benchmarks.stormpair import RATIOS, run_pair


def test_storm_pair_runs_mig_spawner_and_kubespawner_like_for_like():
    pair = asyncio.run(run_pair(10, n_nodes=3, quota=2))
    mig, ks, lfl = pair["mig_spawner"], pair["kubespawner"], pair["mig_spawner_like_for_like"]
    assert (mig["plane"], ks["plane"], lfl["plane"]) == (
        "mig-spawner",
        "kubespawner",
        "mig-spawner",
    )
    # 4 teams x 2 slices: the quotas refuse some of the 10 (ten 1g slices would have fit)
    assert mig["users"] == 10 and 0 < mig["ready"] <= 8 and mig["refused_by_post"] > 0
    # like for like: KubeSpawner spawned exactly the users mig-spawner admitted, and all
    # of them got a server (the cluster has a 1g slice for each); so did mig-spawner
    assert ks["users"] == lfl["users"] == pair["admitted_by_mig_spawner"] == mig["ready"]
    assert ks["ready_users"] == lfl["ready_users"] == mig["ready_users"]
    for r in (mig, ks, lfl):
        assert r["double_booked_slices"] == 0 and r["quota_overshoot_compute_slices"] == 0
        assert r["hub_cpu_s"] > 0 and r["max_requests_in_flight"] == r["users"]
        assert r["hub_profile"]["busy_samples"] > 0
    # KubeSpawner's pods asked for the profile's slice: the same slice mig-spawner granted
    assert set(ks["storm_pods_gpu_resources"]) == {"nvidia.com/mig-1g.10gb"}
    assert set(lfl["storm_pods_gpu_resources"]) == {"nvidia.com/mig-1g.10gb"}
    assert ks["storm_pods_gpu_resources"]["nvidia.com/mig-1g.10gb"] >= ks["ready"]
    # the KubeSpawner hub never ran mig-spawner's code
    assert "mig_spawner" not in ks["hub_profile"]["samples"]
    ratios = pair["ratios_mig_over_kubespawner"]
    assert set(ratios) == set(RATIOS)
    assert all(math.isfinite(v) and v > 0 for v in ratios.values())
    assert 0 <= pair["mig_spawner_share_of_busy_loop"] < 1
