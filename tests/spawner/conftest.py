"""Fixtures for hub-level tests; the helpers live in hub_harness.py."""

from __future__ import annotations

import pytest
from hub_harness import TEAMS, TWO_H100, hub_config
from jupyterhub.tests.utils import add_user
from kubespawner.clients import load_config

from mig_spawner import MIGSpawner
from mig_spawner.demo.emulator import EmulatedCluster, load_cluster_spec


@pytest.fixture
async def make_cluster():
    clusters = []

    # KubeSpawner sets the process-wide API host once per distinct k8s_api_host (an
    # lru_cache): with the OS reusing a port, a hub would talk to an earlier test's server.
    load_config.cache_clear()

    async def make(spec=TWO_H100, kubelet="stub"):
        cluster = EmulatedCluster(load_cluster_spec(spec), kubelet=kubelet)
        await cluster.__aenter__()
        clusters.append(cluster)
        return cluster

    yield make
    await MIGSpawner.stop_cluster_views()
    # KubeSpawner keeps its pod/event reflectors at class level: the next test's hub
    # must not inherit watches on this test's (closed) loop and cluster.
    await MIGSpawner._stop_all_reflectors()
    for cluster in clusters:
        await cluster.__aexit__(None, None, None)


@pytest.fixture
async def hub(make_cluster, hub_app, tmp_path):
    """``await hub(spec=..., **migspawner_settings)`` -> (app, cluster).

    Fixture order matters: hub_app is torn down first (it stops the users' servers
    while the cluster still answers), then make_cluster stops watches and clusters.
    """

    async def start(spec=TWO_H100, teams=None, extra=None, **mig):
        cluster = await make_cluster(spec)
        config = hub_config(cluster.url, tmp_path, teams=teams, **mig)
        for section, values in (extra or {}).items():
            config.setdefault(section, {}).update(values)
        app = await hub_app(config)
        for users in (TEAMS if teams is None else teams).values():
            for name in users:
                add_user(app.db, app, name=name)
        return app, cluster

    return start
