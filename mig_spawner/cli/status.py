"""``mig-spawner status``: the cluster's MIG slices, who holds them and team quotas, as tables.

The figures come from :mod:`mig_spawner.core.slicemap` over a ClusterState built from a
snapshot file or the live cluster (:mod:`.live`), the same rows the GPU slice page
(``/services/mig/``) and ``/hub/metrics`` show. Rendering uses ``rich``;
:func:`status_dict` is the ``--json`` form. Nothing here prints or exits:
:func:`render_status` writes to the console it is given.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..core import linedoc, slicemap
from ..core.cluster import ClusterState
from ..core.policy import Policy

STYLES = {
    slicemap.USED: "bold white on blue",
    slicemap.RESERVED: "black on yellow",
    slicemap.OTHER: "white on magenta",
    slicemap.FREE: "green",
    slicemap.UNUSABLE: "dim",
}


@dataclass
class Status:
    state: ClusterState
    policy: Policy | None
    warnings: list[str]
    source: str
    maps: list[slicemap.NodeMap]
    #: the hub's saved waiting line (None: not read) and, when not, why
    line: linedoc.LineDoc | None = None
    line_note: str = ""
    now: float = 0.0


def line_source(hub_config: Any, trust: Any) -> tuple[str, str]:
    """(the hub's namespace or "" when unknown, its hub_id) from its config (``--config``)."""
    from ..hub.config import setting

    hub_id = (trust.hub if trust is not None else None) or "jupyterhub"
    namespace = ""
    if hub_config is not None:
        for section in ("MIGSpawner", "KubeSpawner"):
            value = setting(hub_config.get(section), "namespace", None)
            if isinstance(value, str) and value:
                namespace = value
                break
    return namespace, hub_id


def line_of(
    configmaps: list[dict[str, Any]], namespace: str, hub_id: str
) -> tuple[linedoc.LineDoc | None, str]:
    """The line saved in ``configmaps`` (a snapshot's or the live read's) for the hub, or
    (None, why not). A garbled or foreign one raises its located InputError (exit 2)."""
    name = linedoc.configmap_name(hub_id)
    found = [
        cm
        for cm in configmaps
        if (cm.get("metadata") or {}).get("name") == name
        and (not namespace or (cm.get("metadata") or {}).get("namespace") == namespace)
    ]
    if not found:
        if not namespace and not configmaps:
            return None, (
                f"Waiting line: not read (pass --config with the hub's namespace, or add "
                f"`kubectl get configmap {name} -n NAMESPACE -o json` to the snapshot)."
            )
        return linedoc.empty(hub_id), ""
    return linedoc.parse_configmap(found[0], hub_id), ""


def build_status(
    state: ClusterState,
    policy: Policy | None,
    *,
    warnings: list[str],
    source: str,
    nodes: str | None = None,
) -> Status:
    """``nodes``: a glob (``gpu-h100-*``) limiting the per-node tables."""
    maps = slicemap.node_maps(state)
    if nodes:
        maps = [m for m in maps if fnmatch.fnmatchcase(m.name, nodes)]
    return Status(state, policy, warnings, source, maps)


def _holder_text(cell: slicemap.Cell) -> str:
    h = cell.holder
    if h is None:
        return cell.state
    if not h.managed:
        return f"{h.key} (not a hub server)"
    server = f"/{h.server}" if h.server else ""
    extra = " starting" if h.reserved else ""
    fallback = f" ⤴{h.requested}" if h.fallback else ""
    return f"{h.user}{server} [{h.team or 'personal'}·{h.tier}]{fallback}{extra}"


def render_status(console: Console, status: Status, *, show_map: bool = False) -> None:
    """Summary by type, teams, fallbacks, nodes (and with ``show_map`` every GPU's cells)."""
    state = status.state
    console.print(Text(f"Cluster: {status.source}", style="bold"))
    types = Table(title="Slices by GPU model and profile", title_justify="left")
    for col in ("GPU", "profile", "nodes", "total", "held", "free"):
        types.add_column(
            col, justify="right" if col in ("nodes", "total", "held", "free") else "left"
        )
    for t in slicemap.by_type(slicemap.capacity(state)):
        free = Text(str(t.free), style="red" if t.free == 0 else "green")
        types.add_row(t.gpu, t.profile, str(t.nodes), str(t.total), str(t.held), free)
    console.print(types)

    if status.policy is not None:
        teams = Table(title="Teams against their quotas", title_justify="left")
        for col in ("team", "limit", "used", ""):
            teams.add_column(col)
        for row in slicemap.team_rows(status.policy, state):
            limited = [(u, used, cap) for u, used, cap in row.limits if cap is not None]
            if not limited:
                teams.add_row(row.team, "no limit", f"{row.servers} server(s)", "")
            for i, (unit, used, cap) in enumerate(limited):
                full = used >= cap
                bar = _bar(used, cap)
                teams.add_row(
                    row.team if i == 0 else "",
                    unit.replace("_", " "),
                    Text(f"{used:g} of {cap:g}", style="bold red" if full else ""),
                    Text(bar, style="red" if full else "green"),
                )
        console.print(teams)
    else:
        console.print(Text("Teams: pass --config jupyterhub_config.py to see quotas.", style="dim"))

    shown = {m.name for m in status.maps}
    fallbacks = [(n, h) for n, h in slicemap.fallback_servers(state) if n in shown]
    if fallbacks:
        table = Table(title="Servers on a fallback slice", title_justify="left")
        for col in ("user", "server", "team", "tier", "asked", "running on", "node"):
            table.add_column(col)
        for node, h in fallbacks:
            table.add_row(
                h.user, h.server or "default", h.team or "-", h.tier, h.requested, h.profile, node
            )
        console.print(table)
    else:
        console.print(Text("Servers on a fallback slice: none.", style="dim"))

    nodes = Table(title="Nodes", title_justify="left")
    for col in ("node", "GPU", "GPUs", "state", "held", "free", "notes"):
        nodes.add_column(col)
    for m in status.maps:
        held = m.count(slicemap.USED) + m.count(slicemap.OTHER) + m.count(slicemap.RESERVED)
        free = m.count(slicemap.FREE)
        nodes.add_row(
            m.name,
            m.gpu_name,
            str(len(m.gpus)),
            Text("usable" if m.usable else str(m.why_unusable), style="" if m.usable else "red"),
            str(held),
            str(free),
            "; ".join(m.problems),
        )
    console.print(nodes)

    if show_map:
        for m in status.maps:
            console.print(Text(f"{m.name} ({m.gpu_name})", style="bold"))
            for gpu in m.gpus:
                console.print(Text(f"  GPU {gpu.index}", style="bold"))
                if not gpu.cells:
                    console.print(Text("    no MIG instances", style="dim"))
                for cell in gpu.cells:
                    span = range(cell.start, cell.start + cell.size)
                    where = "".join("█" if i in span else "·" for i in range(gpu.width))
                    line = Text(f"    {where}  ")
                    line.append(f"{cell.profile:<9}", style="bold")
                    line.append(" ")
                    line.append(_holder_text(cell), style=STYLES[cell.state])
                    console.print(line)
    _render_line(console, status)
    for warning in status.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))


def _render_line(console: Console, status: Status) -> None:
    if status.line is None:
        if status.line_note:
            console.print(Text(status.line_note, style="dim"))
        return
    tiers = list(status.policy.tiers) if status.policy is not None else []
    rows = linedoc.summary(status.line, tiers)
    if not rows:
        console.print(Text("Waiting line: nobody is waiting.", style="dim"))
        return
    table = Table(title="Waiting line", title_justify="left")
    for col in ("tier", "#", "user", "server", "team", "waited", "ETA"):
        table.add_column(col, justify="right" if col in ("#", "waited") else "left")
    for row in rows:
        for i, p in enumerate(row.places):
            waited = max(0.0, status.now - p.requested_at) if status.now else 0.0
            table.add_row(
                f"{row.tier} ({row.waiting} waiting)" if i == 0 else "",
                str(p.position),
                p.user,
                p.server_name or "default",
                p.team or "-",
                f"{round(waited / 60)} min",
                linedoc.eta_text(p.eta_seconds),
            )
    console.print(table)


def _bar(used: float, limit: float, width: int = 20) -> str:
    filled = min(width, round(width * used / limit)) if limit else 0
    return "█" * filled + "░" * (width - filled)


def status_dict(status: Status) -> dict[str, Any]:
    """The ``--json`` form: the same rows as the tables, and every cell of every GPU."""
    state = status.state
    out: dict[str, Any] = {
        "source": status.source,
        "types": [
            {
                "gpu": t.gpu,
                "profile": t.profile,
                "nodes": t.nodes,
                "total": t.total,
                "held": t.held,
                "free": t.free,
            }
            for t in slicemap.by_type(slicemap.capacity(state))
        ],
        "teams": None,
        "line": None,
        "nodes": [],
        "warnings": list(status.warnings),
    }
    if status.policy is not None:
        out["teams"] = [
            {
                "team": row.team,
                "servers": row.servers,
                "limits": {unit: {"used": used, "limit": cap} for unit, used, cap in row.limits},
            }
            for row in slicemap.team_rows(status.policy, state)
        ]
    if status.line is not None:
        tiers = list(status.policy.tiers) if status.policy is not None else []
        out["line"] = linedoc.summary_dict(status.line, status.now, tiers)
    for m in status.maps:
        out["nodes"].append(
            {
                "name": m.name,
                "gpu": m.gpu_name,
                "usable": m.usable,
                "why_unusable": m.why_unusable,
                "problems": list(m.problems),
                "gpus": [
                    {
                        "index": g.index,
                        "width": g.width,
                        "cells": [_cell_dict(c) for c in g.cells],
                    }
                    for g in m.gpus
                ],
            }
        )
    return out


def _cell_dict(cell: slicemap.Cell) -> dict[str, Any]:
    h = cell.holder
    return {
        "profile": cell.profile,
        "start": cell.start,
        "size": cell.size,
        "state": cell.state,
        "holder": None
        if h is None
        else {
            "pod": h.key,
            "user": h.user or None,
            "team": h.team or None,
            "server": h.server,
            "tier": h.tier or None,
            "requested": h.requested or None,
            "fallback": h.fallback,
        },
    }
