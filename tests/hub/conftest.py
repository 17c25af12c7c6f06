"""Fixtures for hub-level tests; the helpers live in hub_harness.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hub_harness import TEAMS, TWO_H100, hub_config, with_service
from jupyterhub.tests.utils import add_user
from kubespawner.clients import load_config
from prometheus_harness import dcgm_exporter, prometheus  # noqa: F401 (the real Prometheus)
from realk8s import HUB_NAMESPACE, hub_kubeconfig

from mig_spawner import MIGSpawner
from mig_spawner.demo.controlplane import kubeconfig_dict, write_kubeconfig
from mig_spawner.demo.emulator import EmulatedCluster, load_cluster_spec
from mig_spawner.demo.ports import free_port


async def _start_hub(hub_app, config: dict, teams, extra, service=None):
    """Start the hub with ``config`` plus the test's ``extra`` sections; add the teams' users.

    ``service``: a directory for mig-spawner's service config: the hub runs the service."""
    if service is not None:
        extra = with_service(config, service, extra)
    for section, values in (extra or {}).items():
        config.setdefault(section, {}).update(values)
    # MockHub picks the hub's, the proxy's and its API's ports by separate random_port()
    # calls: ephemeral ports, which can repeat (the proxy's EADDRINUSE, then a 404 on its
    # API) or be taken by an outgoing connection before the hub binds (EADDRINUSE at the
    # start of a second hub): pick them below the ephemeral range, each once.
    hub = config.setdefault("JupyterHub", {})
    hub.setdefault("hub_port", free_port())
    hub.setdefault("bind_url", f"http://127.0.0.1:{free_port()}/@/space%20word/")
    config.setdefault("ConfigurableHTTPProxy", {}).setdefault(
        "api_url", f"http://127.0.0.1:{free_port()}"
    )
    app = await hub_app(config)
    for users in (TEAMS if teams is None else teams).values():
        for name in users:
            add_user(app.db, app, name=name)
    return app


@pytest.fixture
async def make_cluster():
    clusters = []

    # KubeSpawner sets the process-wide API host once per distinct k8s_api_host (an
    # lru_cache): with the OS reusing a port, a hub would talk to an earlier test's server.
    load_config.cache_clear()

    async def make(spec=TWO_H100, kubelet="stub", start_delay=0.0):
        cluster = EmulatedCluster(load_cluster_spec(spec), kubelet=kubelet, start_delay=start_delay)
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

    async def start(spec=TWO_H100, teams=None, extra=None, service=False, start_delay=0.0, **mig):
        cluster = await make_cluster(spec, start_delay=start_delay)
        config = hub_config(cluster.url, tmp_path, teams=teams, **mig)
        app = await _start_hub(hub_app, config, teams, extra, tmp_path if service else None)
        return app, cluster

    return start


# ------------------------------------------------------------- the real control plane

PLACEHOLDER = Path(os.environ["KUBECONFIG"])


@pytest.fixture
async def _reflectors():
    """Set up before hub_app, so torn down after it: the next test's hub must not inherit
    this one's watches (KubeSpawner keeps them at class level)."""
    saved = PLACEHOLDER.read_text()
    yield
    await MIGSpawner.stop_cluster_views()
    await MIGSpawner._stop_all_reflectors()
    PLACEHOLDER.write_text(saved)


@pytest.fixture
async def real_hub(_reflectors, control_plane, real_cluster, hub_app, tmp_path):
    """``await real_hub(spec=..., service_account="hub", **migspawner_settings)`` ->
    (app, :class:`realk8s.RealCluster`): the same hub as ``hub``, on the real control plane
    (``namespace``: the pods' and the ServiceAccount's, ``jhub`` by default)."""

    async def start(
        spec=TWO_H100,
        teams=None,
        extra=None,
        service_account="hub",
        service=False,
        start_delay=0.0,
        dra=False,
        namespace=HUB_NAMESPACE,
        **mig,
    ):
        """``dra``: the cluster's GPUs are NVIDIA DRA driver devices (ResourceSlices) and
        the hub runs ``backend = "dra"``."""
        cluster = real_cluster(spec, start_delay=start_delay, dra=dra)
        if dra:
            mig.setdefault("backend", "dra")
        # KubeSpawner loads its credentials from the kubeconfig kubernetes_asyncio was told
        # about at import (tests/conftest.py): the hub's ServiceAccount token goes there.
        if namespace == HUB_NAMESPACE:
            hub_kubeconfig(control_plane, PLACEHOLDER, service_account)
        else:  # another namespace with a hub's RBAC (the Kueue fixture's jhub-kueue)
            token = control_plane.service_account_token(namespace, service_account)
            write_kubeconfig(
                PLACEHOLDER,
                kubeconfig_dict(
                    control_plane.url,
                    control_plane.ca,
                    token=token,
                    user=service_account,
                    namespace=namespace,
                ),
            )
        # load_config is cached by (host, CA file): a per-test CA path makes it reload.
        ca = tmp_path / "ca.crt"
        shutil.copy(control_plane.ca, ca)
        config = hub_config(cluster.url, tmp_path, teams=teams, **mig)
        config["KubeSpawner"]["k8s_api_ssl_ca_cert"] = str(ca)
        config["KubeSpawner"]["namespace"] = namespace
        config["KubeSpawner"]["start_timeout"] = 60
        app = await _start_hub(hub_app, config, teams, extra, tmp_path if service else None)
        return app, cluster

    return start


@pytest.fixture(params=["emulator", "real"])
def plane_hub(request):
    """``hub`` on the emulator, then ``real_hub`` on the real control plane: a test that
    takes ``plane_hub`` runs on both, through nothing but HTTP to the API server."""
    return request.getfixturevalue("hub" if request.param == "emulator" else "real_hub")
