"""Fixtures for the emulated-cluster tests: clusters, a real kubernetes_asyncio client."""

from __future__ import annotations

from typing import Any

import pytest
from emu_helpers import THREE_NODES
from kubernetes_asyncio import client

from mig_spawner.demo.emulator import EmulatedCluster, load_cluster_file, shipped_cluster_file


@pytest.fixture
async def make_emu(tmp_path):
    """``await make_emu(spec=THREE_NODES|"demo"|"single"|dict|path|None, **kwargs)`` -> a
    started cluster."""
    clusters: list[EmulatedCluster] = []

    async def make(spec: Any = THREE_NODES, **kwargs: Any) -> EmulatedCluster:
        if spec in ("demo", "single"):
            spec = load_cluster_file(shipped_cluster_file(spec))
        kwargs.setdefault("log_dir", tmp_path / f"logs-{len(clusters)}")
        cluster = EmulatedCluster(spec, **kwargs)
        await cluster.start()
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        await cluster.stop()


@pytest.fixture
async def emu(make_emu) -> EmulatedCluster:
    """The :data:`THREE_NODES` cluster, stub kubelet."""
    return await make_emu()


@pytest.fixture
async def core(emu):
    """A real kubernetes_asyncio CoreV1Api pointed at :func:`emu`."""
    async with client.ApiClient(client.Configuration(host=emu.url)) as api:
        yield client.CoreV1Api(api)
