"""Helpers for the emulated-cluster tests (imported as ``emu_helpers``)."""

from __future__ import annotations

import asyncio
from typing import Any

from mig_spawner.demo.emulator import EmulatedCluster

#: The cluster most tests run on (independent of the shipped demo file, which may change):
#: two H100 80GB nodes, one with 7 x 1g.10gb, one balanced (2 x 1g.10gb, 2g.20gb, 3g.40gb),
#: and an A100 40GB (2 x 1g.5gb, 2g.10gb, 3g.20gb), all mixed strategy.
THREE_NODES = {
    "nodes": [
        {
            "name": "gpu-h100-a",
            "gpu": "NVIDIA-H100-80GB-HBM3",
            "strategy": "mixed",
            "mig": [["1g.10gb"] * 7],
            "labels": {"node-pool": "h100"},
        },
        {
            "name": "gpu-h100-b",
            "gpu": "h100-80gb",
            "strategy": "mixed",
            "mig": "all-balanced",
            "labels": {"node-pool": "h100"},
        },
        {
            "name": "gpu-a100-a",
            "gpu": "NVIDIA-A100-SXM4-40GB",
            "strategy": "mixed",
            "mig": [["3g.20gb", "2g.10gb", "1g.5gb", "1g.5gb"]],
            "labels": {"node-pool": "a100"},
        },
    ]
}


def make_pod(
    name: str | None = "p",
    limits: dict[str, str] | None = None,
    *,
    labels: dict[str, str] | None = None,
    init: list[dict[str, str]] | None = None,
    args: list[str] | None = None,
    generate_name: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A pod manifest; ``limits`` go on its one container, ``init`` gives init containers'
    limits."""
    container: dict[str, Any] = {"name": "notebook", "image": "quay.io/jupyter/base-notebook:1"}
    if limits:
        container["resources"] = {"limits": dict(limits)}
    if args is not None:
        container["args"] = args
    body: dict[str, Any] = {"metadata": {}, "spec": {"containers": [container], **spec}}
    if name:
        body["metadata"]["name"] = name
    if generate_name:
        body["metadata"]["generateName"] = generate_name
    if labels:
        body["metadata"]["labels"] = labels
    if init:
        body["spec"]["initContainers"] = [
            {"name": f"init-{i}", "image": "busybox:1", "resources": {"limits": dict(lim)}}
            for i, lim in enumerate(init)
        ]
    return body


async def wait_phase(cluster: EmulatedCluster, name: str, phase: str, ns: str = "default"):
    def check(c: EmulatedCluster):
        pod = c.pod(name, ns)
        return pod if pod and pod["status"].get("phase") == phase else None

    return await cluster.wait_for(check, timeout=10)


async def settle(seconds: float = 0.05) -> None:
    """Let the scheduler and kubelet tasks run."""
    await asyncio.sleep(seconds)
