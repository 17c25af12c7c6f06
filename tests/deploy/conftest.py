"""Fixtures for the Zero to JupyterHub deployment tests (no cluster, no network).

KubeSpawner's constructor loads a Kubernetes client configuration: in-cluster first, then the
kubeconfig file. Every test here runs with a small, valid kubeconfig that points at an
unreachable local address (nothing ever talks to it), and without in-cluster settings, so a
developer's real cluster can never be reached from these tests.
"""

from __future__ import annotations

import sys

import pytest

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
  - name: offline
    cluster:
      server: https://127.0.0.1:1
      insecure-skip-tls-verify: true
users:
  - name: offline
    user:
      token: not-a-real-token
contexts:
  - name: offline
    context:
      cluster: offline
      user: offline
      namespace: jupyterhub
current-context: offline
"""


@pytest.fixture(autouse=True)
def offline_kubeconfig(tmp_path, monkeypatch):
    """Point KUBECONFIG at a throwaway kubeconfig for the duration of one test.

    kubernetes_asyncio reads $KUBECONFIG once, when its kube_config module is first imported;
    when that has already happened, its default location is patched as well. Both are
    restored after the test, so tests outside tests/deploy are unaffected.
    """
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # no in-cluster config
    kube_config = sys.modules.get("kubernetes_asyncio.config.kube_config")
    if kube_config is not None:
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    return path
