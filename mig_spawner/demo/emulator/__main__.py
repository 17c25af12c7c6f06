"""Run an emulated cluster in the foreground: ``python -m mig_spawner.demo.emulator [FILE]``.

Prints the API URL, writes a kubeconfig (``--kubeconfig``), and runs until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .cluster import EmulatedCluster
from .clusterfile import ClusterSpecError, load_cluster_file, shipped_cluster_file


async def _serve(args: argparse.Namespace) -> None:
    spec = load_cluster_file(args.cluster if args.cluster else shipped_cluster_file("demo"))
    async with EmulatedCluster(
        spec, kubelet=args.kubelet, host=args.host, port=args.port
    ) as cluster:
        if args.kubeconfig:
            cluster.write_kubeconfig(args.kubeconfig)
        print(f"emulated cluster at {cluster.url} ({len(cluster.nodes)} nodes)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mig_spawner.demo.emulator", description=__doc__
    )
    parser.add_argument("cluster", nargs="?", help="cluster YAML file (default: the shipped demo)")
    parser.add_argument("--kubelet", choices=("stub", "process"), default="process")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the cluster here")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except ClusterSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
