"""Helpers for the emulated-cluster tests (imported as ``emu_helpers``)."""

from __future__ import annotations

import asyncio
from typing import Any

from mig_spawner.emulator import EmulatedCluster


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
