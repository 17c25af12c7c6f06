"""The real Kubernetes control plane for integration tests and ``mig-spawner demo
--real-control-plane``: :mod:`.launcher` starts etcd, kube-apiserver, kube-scheduler and
kube-controller-manager (built by ``make k8s``); :mod:`.agent` registers the cluster file's
GPU nodes on it and runs their pods with the emulator's kubelet, seeing the API server
through :mod:`.mirror`; :mod:`.pki` makes the certificates and kubeconfigs.
"""

from __future__ import annotations

from .launcher import (
    BUILD_COMMAND,
    K8S_VERSION,
    ControlPlane,
    NotBuilt,
    cache_dir,
    missing_binaries,
    require_binaries,
)
from .pki import kubeconfig_dict, write_kubeconfig

__all__ = [
    "BUILD_COMMAND",
    "K8S_VERSION",
    "ControlPlane",
    "NotBuilt",
    "cache_dir",
    "kubeconfig_dict",
    "missing_binaries",
    "require_binaries",
    "write_kubeconfig",
]
