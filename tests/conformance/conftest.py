"""The ``api`` fixture: one API-behaviour test, run against the emulator and the real API
server (the backends and helpers are in conformance_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance_helpers import NAMESPACE, SPEC, Backend

from mig_spawner.demo.controlplane.mirror import ApiClient
from mig_spawner.demo.emulator import EmulatedCluster, load_cluster_spec


@pytest.fixture(params=["emulator", "real"])
async def api(request, tmp_path):
    if request.param == "emulator":
        cluster = EmulatedCluster(
            load_cluster_spec(SPEC),
            kubelet="stub",
            auto_namespaces=False,
            namespaces=[NAMESPACE],
            log_dir=tmp_path / "emu",
        )
        await cluster.start()
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        try:
            async with ApiClient(kubeconfig) as api:
                yield Backend("emulator", api, Path(kubeconfig), cluster)
        finally:
            await cluster.stop()
    else:
        plane = request.getfixturevalue("control_plane")
        start = request.getfixturevalue("real_cluster")
        cluster = start(SPEC)
        async with ApiClient(plane.kubeconfig) as api:
            yield Backend("real", api, plane.kubeconfig, cluster, plane)
