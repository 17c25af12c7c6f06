"""The ``mig-spawner`` command: ``catalog``, ``explain``, ``status``, ``demand``, ``advise``
(and ``demo`` if installed).

Thin on purpose: argument parsing and printing. Loading snapshots and configs, deciding
and rendering live in :mod:`mig_spawner.cli.explain`. Exit status: 0 when a decision was made
(admitted or refused), 2 for unusable input or arguments (one ``mig-spawner: error: ...``
line on stderr, naming file:line:column where it can, then that line with a caret), 1 for
an internal error; never a traceback unless ``MIG_SPAWNER_DEBUG``
is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from . import demo as demo_cli

PROG = "mig-spawner"
EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2


def _err(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- catalog


def cmd_catalog(args: argparse.Namespace) -> int:
    from ..core.catalog import default_catalog
    from .explain import render_catalog

    if args.json:
        print(json.dumps(default_catalog().to_json(), indent=2))
    else:
        print(render_catalog(default_catalog()))
    return EXIT_OK


# --------------------------------------------------------------------------- explain


def _live_snapshot(args: argparse.Namespace, line: tuple[str, str] | None = None):
    """The live cluster's snapshot when --kubeconfig/--in-cluster was given, else None."""
    if args.kubeconfig is None and not args.in_cluster:
        return None
    from .live import load_live

    return load_live(
        kubeconfig=args.kubeconfig or None,
        context=args.context,
        in_cluster=args.in_cluster,
        timeout=args.timeout,
        **({"line": line} if line else {}),
    )


def _add_source(p: argparse.ArgumentParser) -> None:
    """--cluster FILE | --kubeconfig [FILE] | --in-cluster (exactly one), plus --context."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--cluster", metavar="SNAPSHOT", help="a cluster snapshot JSON file ('-' for stdin)"
    )
    source.add_argument(
        "--kubeconfig",
        nargs="?",
        const="",
        metavar="FILE",
        help="read the live cluster (list only) with this kubeconfig; without FILE: "
        "$KUBECONFIG or ~/.kube/config",
    )
    source.add_argument(
        "--in-cluster",
        action="store_true",
        help="read the live cluster with the pod's service account (e.g. in the hub pod)",
    )
    p.add_argument("--context", metavar="NAME", help="the kubeconfig context (default: current)")
    p.add_argument(
        "--timeout",
        type=float,
        default=30,
        metavar="SECONDS",
        help="per API request when reading the live cluster (default: 30)",
    )


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain, parse_groups, render_report

    if args.context and args.kubeconfig is None:
        raise _usage("--context needs --kubeconfig")
    result = explain(
        snapshot=_live_snapshot(args),
        cluster=args.cluster,
        config=args.config,
        user=args.user,
        tier=args.tier,
        groups=None if args.groups is None else parse_groups(args.groups),
        team=args.team,
    )
    for warning in result.warnings:
        _warn(warning)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(render_report(result))
    return EXIT_OK


# --------------------------------------------------------------------------- status


def cmd_status(args: argparse.Namespace) -> int:
    from .explain import build_state, load_snapshot
    from .hubconfig import load_hub_config, policy_from_config, trust_from_config

    if args.context and args.kubeconfig is None:
        raise _usage("--context needs --kubeconfig")
    policy = trust = hub_config = None
    if args.config:
        hub_config = load_hub_config(args.config)
        policy = policy_from_config(hub_config, source=", ".join(args.config), files=args.config)
        trust = trust_from_config(hub_config)
    from .status import build_status, line_of, line_source, render_status, status_dict

    where = line_source(hub_config, trust)
    snapshot = _live_snapshot(args, where if where[0] else None) or load_snapshot(args.cluster)
    state, warnings = build_state(snapshot, trust)
    status = build_status(
        state, policy, warnings=warnings, source=snapshot.source, nodes=args.nodes
    )
    status.line, status.line_note = line_of(snapshot.line_configmaps, *where)
    status.now = time.time()
    if args.json:
        print(json.dumps(status_dict(status), indent=2))
        return EXIT_OK
    from rich.console import Console

    render_status(Console(highlight=False), status, show_map=args.map)
    return EXIT_OK


# --------------------------------------------------------------------------- demand / advise


def cmd_demand(args: argparse.Namespace) -> int:
    from .advise import read_demand

    result = read_demand(args.files)
    for record in result.records:
        print(json.dumps(record.to_dict(), separators=(",", ":"), ensure_ascii=False))
    if result.skipped:
        _warn(f"skipped {result.skipped} garbled demand line(s): {'; '.join(result.problems[:3])}")
    if not result.records:
        raise _usage(f"no demand records in {', '.join(args.files)}")
    return EXIT_OK


def cmd_advise(args: argparse.Namespace) -> int:
    from .advise import advise, read_demand, to_dict
    from .advise_report import render_text, write_svg
    from .explain import load_snapshot

    if args.context and args.kubeconfig is None:
        raise _usage("--context needs --kubeconfig")
    if args.apply and args.kubeconfig is None and not args.in_cluster:
        raise _usage("--apply needs the live cluster: --kubeconfig or --in-cluster")
    if args.max_nodes_changed is not None and args.max_nodes_changed < 0:
        raise _usage("--max-nodes-changed must be >= 0")
    if args.windows < 1 or min(args.patience, args.search_seconds, args.time_limit) < 0:
        raise _usage("--windows must be >= 1; --patience, --search-seconds, --time-limit >= 0")
    policy = None
    if args.config:
        from .hubconfig import load_hub_config, policy_from_config

        policy = policy_from_config(load_hub_config(args.config), source=", ".join(args.config))
    demand = read_demand([f for group in args.demand for f in group])
    snapshot = _live_snapshot(args) or load_snapshot(args.cluster)
    for warning in snapshot.warnings:
        _warn(warning)
    result = advise(
        snapshot,
        demand,
        policy,
        windows=args.windows,
        max_nodes_changed=args.max_nodes_changed,
        patience=args.patience,
        time_limit=args.time_limit,
        search_seconds=args.search_seconds,
    )
    for warning in result.warnings:
        _warn(warning)
    if demand.skipped:
        _warn(f"skipped {demand.skipped} garbled demand line(s): {'; '.join(demand.problems[:3])}")
    if args.plot:
        write_svg(result, args.plot)
    if args.json:
        print(json.dumps(to_dict(result), indent=2))
    else:
        print(render_text(result))
    if not args.apply:
        return EXIT_OK
    from .advise_apply import apply_advice

    return apply_advice(result, args)


def _usage(message: str) -> Exception:
    from .explain import InputError

    return InputError(message)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Hand out NVIDIA MIG slices on Kubernetes by tier: inspect and dry-run.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "catalog",
        help="list every MIG-capable GPU model and profile mig-spawner knows",
        description="List every MIG-capable GPU model and profile mig-spawner knows.",
    )
    p.add_argument("--json", action="store_true", help="print the catalog as JSON")
    p.set_defaults(func=cmd_catalog)

    p = sub.add_parser(
        "explain",
        help="dry-run a spawn: what would USER get for TIER on this cluster, and why",
        description=(
            "Decide, exactly as the hub would, what a user gets for a tier on a cluster "
            "snapshot or the live cluster (read-only: list only). Exit status 0 when a "
            "decision was made (admitted or refused), 2 when the input cannot be used."
        ),
        epilog="SNAPSHOT is the output of `kubectl get nodes,pods -A -o json` ('-' for stdin).",
    )
    _add_source(p)
    p.add_argument(
        "--config",
        required=True,
        action="append",
        metavar="CONFIG",
        help=(
            "a jupyterhub_config.py, or a Zero to JupyterHub values file (.yaml); repeat it"
            " for layered values files (--config values.yaml --config values-<variant>.yaml),"
            " merged as helm -f merges them and read as the chart's hub reads them"
        ),
    )
    p.add_argument("--user", required=True, metavar="NAME", help="the JupyterHub user name")
    p.add_argument(
        "--groups",
        metavar="A,B",
        help="the user's groups, comma-separated (default: from c.JupyterHub.load_groups)",
    )
    p.add_argument("--team", metavar="T", help="spawn for this team (default: first with room)")
    p.add_argument("--tier", required=True, metavar="SLUG", help="the tier asked for")
    p.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser(
        "status",
        help="the cluster's MIG slices, who holds them, and team quotas, as tables",
        description=(
            "Show every slice type's total, held and free counts, each team against its "
            "quota (with --config), servers on a fallback slice, every node, and the hub's "
            "waiting line (who waits for which tier, at which position, for how long, and "
            "the ETA), from a snapshot or the live cluster (read-only: list, and get of the "
            "line's ConfigMap mig-spawner-line-<hub_id> in the namespace --config names). "
            "In-flight reservations live in the hub's memory: /hub/metrics counts them. "
            "A line ConfigMap that cannot be read is bad input (exit 2)."
        ),
        epilog=(
            "SNAPSHOT is the output of `kubectl get nodes,pods -A -o json` ('-' for stdin); "
            "add the line's ConfigMap (`kubectl get configmap mig-spawner-line-jupyterhub -n "
            "NAMESPACE -o json`) to its items to see the waiting line."
        ),
    )
    _add_source(p)
    p.add_argument(
        "--config",
        action="append",
        metavar="CONFIG",
        help="for team quotas and the waiting line (hub_id, namespace): a jupyterhub_config.py,"
        " or Zero to JupyterHub values files (repeat it in helm -f order)",
    )
    p.add_argument("--nodes", metavar="GLOB", help="only nodes whose name matches, e.g. 'gpu-*'")
    p.add_argument("--map", action="store_true", help="draw every GPU's MIG layout and holders")
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.set_defaults(func=cmd_status)

    _add_advise(sub)
    if demo_cli.demo_available():
        demo_cli.add_demo(sub)
    return parser


def _add_advise(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demand",
        help="extract the demand records from hub log files (JSON lines on stdout)",
        description=(
            "Print every 'demand' record of hub log files (or JSON-lines files) as one JSON "
            "line each. Garbled lines are skipped and counted on stderr; exit 2 if none."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="hub log or JSON-lines files")
    p.set_defaults(func=cmd_demand)

    p = sub.add_parser(
        "advise",
        help="advise MIG layouts per node from the recorded demand, replayed",
        description=(
            "Find, per node, the valid MIG layouts (from the catalog's placements) that "
            "serve the most of the recorded demand, then wait least, when it is replayed "
            "through the hub's decision code: a MILP (SciPy's HiGHS, the `advise` extra) "
            "over every valid layout, checked by replay. Prints current vs advised layouts, "
            "the replay figures and the mig-parted ConfigMap and kubectl commands; changes "
            "nothing unless --apply is given."
        ),
        epilog="SNAPSHOT is the output of `kubectl get nodes,pods -A -o json` ('-' for stdin).",
    )
    _add_source(p)
    p.add_argument(
        "--demand",
        required=True,
        action="append",
        nargs="+",
        metavar="FILE",
        help="hub log files or JSON lines (t, profile, duration_s; optional team, gpu, tier)",
    )
    p.add_argument(
        "--config",
        action="append",
        metavar="CONFIG",
        help="the hub's jupyterhub_config.py or Z2JH values (tiers, chains, quotas for the "
        "replay); without it each profile asked for is a tier of its own",
    )
    p.add_argument(
        "--max-nodes-changed", type=int, metavar="N", help="change the layout of at most N nodes"
    )
    p.add_argument(
        "--patience",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="in the replay, a refused user tries again at each departure for this long "
        "(default 0: refused at once, as the hub answers)",
    )
    p.add_argument(
        "--windows",
        type=int,
        default=48,
        metavar="N",
        help="time windows of the MILP's peak demand (default 48; also solved at 4×N)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="per MILP solve (default 60); the gap reached is reported",
    )
    p.add_argument(
        "--search-seconds",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="replay-guided search after the MILP (default 30; 0 turns it off)",
    )
    p.add_argument("--json", action="store_true", help="print the advice as one JSON object")
    p.add_argument("--plot", metavar="FILE", help="write an SVG chart of the replay")
    p.add_argument(
        "--apply",
        action="store_true",
        help="label the changed nodes that run no GPU pod (cordoned meanwhile) and wait for "
        "nvidia.com/mig.config.state=success; stops at the first failure",
    )
    p.add_argument("--yes", action="store_true", help="with --apply: do not ask for confirmation")
    p.add_argument(
        "--apply-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="with --apply: how long to wait for each node (default 600)",
    )
    p.set_defaults(func=cmd_advise)


def _safe_streams() -> None:
    """Never die on printing '×' to an ASCII terminal."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mig-spawner`` console script. Returns the exit status."""
    from .explain import InputError

    _safe_streams()
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, --version, usage errors
            return e.code if isinstance(e.code, int) else EXIT_USAGE
        return args.func(args)
    except InputError as e:
        _err(str(e))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout went away (e.g. `| head`): stop quietly without a second error on exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
    except Exception as e:
        if os.environ.get("MIG_SPAWNER_DEBUG"):
            raise
        detail = " ".join(str(e).split())
        _err(f"internal error: {type(e).__name__}: {detail} (set MIG_SPAWNER_DEBUG=1 for details)")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
