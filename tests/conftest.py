"""Suite-wide setup.

KubeSpawner loads a kubeconfig when it is constructed, and kubernetes_asyncio reads
KUBECONFIG when first used: point it at a valid (never contacted) file before any test
module imports them. Hub tests point KubeSpawner at their emulated cluster through
``k8s_api_host``; the real-plane hub tests write their ServiceAccount's token into this
file. So the file is this process's own, always: not the developer's kubeconfig, and not
one shared by the suite's parallel workers (pytest-xdist starts each with the env of the
process that started it).
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_TMP = tempfile.mkdtemp(prefix="mig-spawner-tests-")
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
_KUBECONFIG = Path(_TMP) / "kubeconfig"
_KUBECONFIG.write_text(
    """apiVersion: v1
kind: Config
clusters:
- name: placeholder
  cluster: {server: "http://127.0.0.1:9"}
users:
- name: placeholder
  user: {token: placeholder}
contexts:
- name: placeholder
  context: {cluster: placeholder, user: placeholder}
current-context: placeholder
"""
)
os.environ["KUBECONFIG"] = str(_KUBECONFIG)

# Fixtures for the real control plane (tests/realk8s.py): control_plane, real_cluster.
# The real Kueue manager on that control plane (tests/kueue_harness.py): kueue, kueue_queues.
from kueue_harness import kueue, kueue_queues  # noqa: E402, F401
from realk8s import control_plane, real_cluster  # noqa: E402, F401
