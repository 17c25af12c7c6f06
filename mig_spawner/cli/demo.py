"""``mig-spawner demo``: its arguments, and the hand-over to :mod:`mig_spawner.demo.command`.

The demo lives in ``mig_spawner.demo`` (it may import anything; nothing imports it back):
this module only names it, so the CLI's other commands never import it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

DEMO_MODULE = "mig_spawner.demo.command"


def demo_available() -> bool:
    try:
        return importlib.util.find_spec(DEMO_MODULE) is not None
    except (ImportError, ValueError):
        return False


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the local demo: a hub on an emulated MIG cluster",
        description="Run JupyterHub with mig-spawner against an emulated GPU cluster.",
    )
    p.add_argument("--port", type=int, default=8000, help="port of the hub (default: 8000)")
    p.add_argument("--cluster", metavar="FILE", help="the emulated cluster to start from")
    p.add_argument(
        "--real-control-plane",
        action="store_true",
        help="run on a real kube-apiserver, kube-scheduler, kube-controller-manager and etcd "
        "(built by `make k8s`) instead of the emulator",
    )
    p.add_argument(
        "--reclaim",
        metavar="IDLE,GRACE",
        type=seconds_pair,
        help="the 1g notebook's reclaim: a server idle IDLE seconds is stopped for someone "
        "waiting in line, GRACE seconds after its warning (default: 180,60)",
    )
    p.set_defaults(func=cmd_demo)


def seconds_pair(text: str) -> tuple[float, float]:
    """``"180,60"`` -> (180.0, 60.0): idle_after above 0, grace 0 or more."""
    try:
        idle, grace = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not IDLE,GRACE (e.g. 180,60)") from None
    if not (0 < idle < float("inf") and 0 <= grace < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: IDLE must be above 0 and GRACE 0 or more")
    return idle, grace


def cmd_demo(args: argparse.Namespace) -> int:
    demo = importlib.import_module(DEMO_MODULE)
    code = demo.main(args)
    return 0 if code is None else int(code)
