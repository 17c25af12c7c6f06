"""Simulated GPU nodes on a real Kubernetes API server (the role kwok plays, with real
processes): ``python -m mig_spawner.demo.controlplane.agent --kubeconfig K CLUSTER.yaml``.

The agent

* registers one Node per node of the cluster file (the same files the demo and the
  emulator use, :mod:`mig_spawner.demo.emulator.clusterfile`), labelled and with capacity exactly
  as :func:`mig_spawner.demo.emulator.node_object` builds them (GPU Feature Discovery and NVIDIA
  device-plugin labels, ``nvidia.com/mig-*`` / ``nvidia.com/gpu`` capacity);
* keeps them alive as a kubelet does: a ``coordination.k8s.io`` Lease per node in
  ``kube-node-lease`` renewed every few seconds, so the node lifecycle controller leaves
  them Ready and untainted;
* runs every pod that the real kube-scheduler binds to them with the emulator's own
  :class:`~mig_spawner.demo.emulator.kubelet.Kubelet` (stub HTTP servers or real processes, each on
  its own loopback address), which here sees the API server through :class:`MirrorStore`:
  an informer-style local copy of pods and nodes (list, then watch from the list's
  resourceVersion, relist on 410) whose writes become API calls: ``pods/status`` merge
  patches, Event creates and patches, and, at the end of a pod's termination, the final
  ``DELETE`` with grace period 0 (guarded by the pod's uid) that completes a deletion.

It authenticates with the kubeconfig it is given (the harness's admin credential).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from typing import Any

from ..emulator.clusterfile import ClusterSpec, load_cluster_file, shipped_cluster_file
from ..emulator.events import EventRecorder
from ..emulator.kubelet import Kubelet
from ..emulator.nodelabels import node_object
from ..emulator.store import now_micro
from . import dradriver
from .mirror import ApiClient, MirrorStore

log = logging.getLogger("mig_spawner.demo.controlplane.agent")

LEASE_SECONDS = 40
RENEW_EVERY = 5.0


class NodeAgent:
    """Registers the cluster file's nodes, keeps them alive and runs their pods."""

    def __init__(
        self,
        api: ApiClient,
        spec: ClusterSpec,
        *,
        kubelet: str = "stub",
        log_dir: str,
        default_command: list[str] | None = None,
        restart_backoff: float = 10.0,
        dra: bool = False,
    ) -> None:
        self.api, self.spec = api, spec
        #: publish the GPUs as NVIDIA's DRA driver does (dradriver.py) instead of as the
        #: device plugin's extended resources
        self.dra = dra
        self.node_names = {n.name for n in spec.nodes}
        self.store = MirrorStore(api, self.node_names)
        self.recorder = EventRecorder(self.store)  # type: ignore[arg-type]
        host, port = api.host_port
        self.kubelet = Kubelet(
            self.store,  # type: ignore[arg-type]
            self.recorder,
            kubelet,
            log_dir=log_dir,
            api_host=host,
            api_port=port,
            default_command=default_command,
            restart_backoff=restart_backoff,
        )
        self.tasks: list[asyncio.Task] = []

    def node_body(self, spec) -> dict[str, Any]:
        from .launcher import K8S_VERSION

        node = node_object(spec, internal_ip="127.0.0.1")
        if self.dra:  # the DRA driver replaces the device plugin: no nvidia.com/* capacity
            for key in ("capacity", "allocatable"):
                resources = node["status"].get(key) or {}
                node["status"][key] = {
                    k: v for k, v in resources.items() if not k.startswith("nvidia.com/")
                }
        info = node["status"]["nodeInfo"]
        info.update(
            osImage="mig-spawner node agent",
            kernelVersion=os.uname().release,
            containerRuntimeVersion="mig-spawner-agent://1.0.0",
            kubeletVersion=K8S_VERSION,
            kubeProxyVersion=K8S_VERSION,
        )
        return node

    async def register(self) -> None:
        for spec in self.spec.nodes:
            body = self.node_body(spec)
            status, answer = await self.api.request("POST", "/api/v1/nodes", body)
            if status == 409:
                status, answer = await self.api.request(
                    "PATCH",
                    f"/api/v1/nodes/{spec.name}",
                    {"metadata": {"labels": body["metadata"]["labels"]}, "spec": body["spec"]},
                    "application/merge-patch+json",
                )
            if status not in (200, 201):
                raise RuntimeError(f"register node {spec.name}: {status} {answer}")
            status, answer = await self.api.request(
                "PATCH",
                f"/api/v1/nodes/{spec.name}/status",
                {"status": body["status"]},
                "application/merge-patch+json",
            )
            if status != 200:
                raise RuntimeError(f"node {spec.name} status: {status} {answer}")
            await self._renew_lease(spec.name, answer["metadata"]["uid"])

    async def _renew_lease(self, name: str, uid: str | None = None) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        spec = {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": now_micro(),
        }
        status, _ = await self.api.request(
            "PATCH", path, {"spec": spec}, "application/merge-patch+json"
        )
        if status == 404:
            meta: dict[str, Any] = {"name": name, "namespace": "kube-node-lease"}
            if uid:
                meta["ownerReferences"] = [
                    {"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}
                ]
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": meta,
                "spec": spec,
            }
            await self.api.request(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body
            )

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            for name in sorted(self.node_names):
                if (None, name) in self.store.objects["nodes"]:
                    try:
                        await self._renew_lease(name)
                    except Exception as exc:
                        log.warning("lease %s: %s", name, exc)

    async def start(self) -> None:
        await self.register()
        if self.dra:
            await dradriver.publish(self.api, self.spec)
        self.tasks.append(asyncio.create_task(self.store.run_writes()))
        self.tasks.append(asyncio.create_task(self.store.informer("nodes", "/api/v1/nodes")))
        await asyncio.sleep(0)
        self.tasks.append(asyncio.create_task(self.store.informer("pods", "/api/v1/pods")))
        await self.store.synced.wait()
        self.kubelet.start(self.api.host_port[1])
        self.tasks.append(asyncio.create_task(self._heartbeats()))

    async def stop(self) -> None:
        await self.kubelet.stop(grace=2.0)
        if self.dra:
            with contextlib.suppress(Exception):
                await dradriver.withdraw(self.api, self.spec)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _serve(args: argparse.Namespace) -> None:
    spec = load_cluster_file(args.cluster or shipped_cluster_file("demo"))
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="mig-agent-pods-")
    async with ApiClient(args.kubeconfig) as api:
        agent = NodeAgent(
            api,
            spec,
            kubelet=args.kubelet,
            log_dir=log_dir,
            default_command=args.default_command.split() if args.default_command else None,
            dra=args.dra,
        )
        agent.kubelet.start_delay = args.start_delay
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await agent.start()
            print(f"node agent: {len(spec.nodes)} nodes registered", flush=True)
            await stop.wait()
        finally:
            await agent.stop()
            if not args.log_dir:
                import shutil

                shutil.rmtree(log_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mig_spawner.demo.controlplane.agent", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("cluster", nargs="?", help="cluster YAML file (default: the shipped demo)")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--kubelet", choices=("stub", "process"), default="stub")
    parser.add_argument("--log-dir", help="pod logs and homes (default: a temporary directory)")
    parser.add_argument("--default-command", help="command for pods that name none")
    parser.add_argument(
        "--start-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="each pod's containers start this long after it is bound (as an image pull)",
    )
    parser.add_argument(
        "--dra",
        action="store_true",
        help="publish the MIG devices as ResourceSlices of NVIDIA's DRA driver (gpu.nvidia.com)",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s agent %(levelname)s %(message)s",
    )
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
