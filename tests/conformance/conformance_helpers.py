"""Helpers of the conformance suite: the two backends behind the ``api`` fixture (conftest.py).

Both backends get the same GPU nodes (:data:`SPEC`) and a ``research`` namespace; the real
one runs them with the node agent. Tests talk raw HTTP through
:class:`mig_spawner.demo.controlplane.mirror.ApiClient` (the admin kubeconfig for the real server,
the emulator's own kubeconfig for it), so that they see status codes and stream lines as
they are, and through ``kubernetes_asyncio`` where KubeSpawner's view is what matters.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from mig_spawner.demo.controlplane.launcher import OLD_REVISIONS, compact_etcd
from mig_spawner.demo.controlplane.mirror import ApiClient

H100 = "NVIDIA-H100-80GB-HBM3"
NAMESPACE = "research"
SPEC = {
    "nodes": [
        {"name": "conf-a", "gpu": H100, "strategy": "mixed", "mig": [["1g.10gb"] * 7]},
        {"name": "conf-b", "gpu": H100, "strategy": "single", "mig": [["3g.40gb"] * 2]},
    ]
}


@dataclass
class Backend:
    name: str
    api: ApiClient
    kubeconfig: Path
    cluster: Any  # EmulatedCluster or realk8s.RealCluster
    plane: Any = None  # the ControlPlane, for the real one

    async def expired_rv(self) -> str:
        """A resourceVersion the server can no longer replay a watch from."""
        if self.name == "emulator":
            rv = self.cluster.store.rv
            await self.create_pod(pod("expire-me"))
            self.cluster.compact_history()
            return str(rv)
        # Compact etcd up to now. The API server's watch cache serves watches; it was
        # filled from a list at start-up, after the launcher's OLD_REVISIONS, so a
        # revision below those is too old for it as well as compacted away in etcd.
        _status, head = await self.api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods")
        await asyncio.to_thread(compact_etcd, self.plane, head["metadata"]["resourceVersion"])
        return str(OLD_REVISIONS // 2)

    async def create_pod(self, body: dict[str, Any], namespace: str = NAMESPACE) -> dict:
        status, created = await self.api.request(
            "POST", f"/api/v1/namespaces/{namespace}/pods", body
        )
        assert status == 201, created
        return created

    async def get_pod(self, name: str, namespace: str = NAMESPACE) -> tuple[int, dict]:
        return await self.api.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")

    async def wait_pod(self, name: str, predicate, timeout: float = 30) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status, body = await self.get_pod(name)
            if status == 200 and predicate(body):
                return body
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"pod {name}: {status} {body}")
            await asyncio.sleep(0.1)

    async def core(self) -> k8s.CoreV1Api:
        """A kubernetes_asyncio CoreV1Api from the kubeconfig (close its api_client)."""
        configuration = k8s.Configuration()
        await k8s_config.load_kube_config(
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        return k8s.CoreV1Api(k8s.ApiClient(configuration))


def pod(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "busybox:1.36"}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 5, **spec},
    }
