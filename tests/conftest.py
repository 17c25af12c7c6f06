"""Suite-wide setup.

KubeSpawner loads a kubeconfig when it is constructed, and kubernetes_asyncio reads
KUBECONFIG when first used: point it at a valid (never contacted) file before any test
module imports them. Hub tests point KubeSpawner at their emulated cluster through
``k8s_api_host``.
"""

import os
import tempfile
from pathlib import Path

_KUBECONFIG = Path(tempfile.mkdtemp(prefix="mig-spawner-tests-")) / "kubeconfig"
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
os.environ.setdefault("KUBECONFIG", str(_KUBECONFIG))
