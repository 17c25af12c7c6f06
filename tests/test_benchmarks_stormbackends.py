"""The storm on both backends, side by side on the real control plane (structure only: no
timing asserted): the device plugin's extended resources, then DRA's claims, each on a fresh
node agent of the same spec and a fresh ``jupyterhub`` process."""

from __future__ import annotations

import asyncio

from realk8s import require_real_control_plane

from benchmarks.stormbackends import BACKENDS, run_backends, table


def test_the_storm_runs_on_both_backends_with_the_same_outcome():
    require_real_control_plane()
    # one node: 9 x 1g, 1 x 2g, 1 x 3g; 14 users: 11 served (3 on fallbacks), 3 refused
    results = asyncio.run(run_backends(14, n_nodes=1, quota=20, teams=2))
    print(table(results))
    for backend in BACKENDS:
        r = results[backend]
        assert r["backend"] == backend and r["users"] == 14
        assert r["ready"] == r["admitted"] == 11 and r["still_pending"] == 0
        assert r["granted_profiles"] == {"1g.10gb": 9, "2g.20gb": 1, "3g.40gb": 1}
        assert r["double_booked_slices"] == 0 and r["quota_overshoot_compute_slices"] == 0
        assert r["decisions_retried"] >= 0 and r["spawns_per_s"] > 0
