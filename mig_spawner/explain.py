"""Loaders and renderers behind ``mig-spawner explain``: a decision from files, not a live hub.

Everything here is a pure function of its inputs: it returns data or raises
:class:`InputError` with a one-line message that names the file (and line) at fault.
Nothing prints and nothing exits, so the spawner, the demo and the CLI share the same
loaders:

* :func:`load_snapshot` reads ``kubectl get nodes,pods -A -o json`` (a ``List``, a
  ``NodeList``/``PodList``, or a bare JSON list of such items; ``-`` for stdin) and
  :func:`build_state` turns it into a :class:`~mig_spawner.cluster.ClusterState`,
  collecting the problems of garbled objects as warnings instead of failing;
* :func:`load_config` executes a ``jupyterhub_config.py`` the way JupyterHub does and
  :func:`policy_from_config` / :func:`groups_from_config` read mig-spawner's settings
  and the hub's ``load_groups`` from it;
* :func:`render_report` and :func:`render_catalog` produce the CLI's human-readable text.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .admission import (
    FORBIDDEN_TIER,
    NO_MATCHING_GPU,
    UNKNOWN_TIER,
    Decision,
    SpawnRequest,
    decide,
)
from .catalog import Catalog
from .cluster import ADDED, ClusterState
from .policy import ConfigError, Policy, Tier, build_policy

#: What to run to get a snapshot; quoted in error messages.
SNAPSHOT_HINT = "kubectl get nodes,pods -A -o json"
#: The ``c.MIGSpawner`` settings that make up the policy, with their defaults.
POLICY_SETTINGS: dict[str, Any] = {
    "tiers": {},
    "fallback_chains": {},
    "team_quotas": {},
    "default_quota": {},
    "charge": "granted",
}
_LIST_KINDS = {"NodeList": "Node", "PodList": "Pod"}


class InputError(Exception):
    """A snapshot or config cannot be used. ``str(e)`` is one line naming the file."""


# --------------------------------------------------------------------------- snapshot


@dataclass
class Snapshot:
    """The Node and Pod objects of a snapshot, as the API returns them."""

    source: str
    nodes: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    #: one line each: items skipped and why
    warnings: list[str] = field(default_factory=list)
    #: where each node/pod sits in the snapshot's items, for messages
    node_items: list[int] = field(default_factory=list)
    pod_items: list[int] = field(default_factory=list)

    def where(self, kind: str, i: int) -> str:
        items = self.node_items if kind == "Node" else self.pod_items
        return f"items[{items[i]}]" if i < len(items) else f"{kind} #{i + 1}"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def read_json(source: str, *, stdin: BinaryIO | None = None) -> Any:
    """The JSON document in file ``source`` (``-``: ``stdin``, default ``sys.stdin``)."""
    name = "<stdin>" if source == "-" else source
    try:
        if source == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            raw = stream.read()
        else:
            with open(source, "rb") as f:
                raw = f.read()
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror or _one_line(e)}") from None
    if isinstance(raw, str):
        raw = raw.encode()
    if not raw.strip():
        raise InputError(f"{name} is empty; expected the JSON of `{SNAPSHOT_HINT}`")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{name}:{e.lineno}:{e.colno}: not valid JSON ({e.msg}); "
            f"expected the output of `{SNAPSHOT_HINT}`"
        ) from None
    except UnicodeDecodeError:
        raise InputError(
            f"{name} is not UTF-8 text; expected the JSON of `{SNAPSHOT_HINT}`"
        ) from None
    except RecursionError:
        raise InputError(f"{name}: JSON nested too deeply") from None


def _guess_kind(item: Mapping[str, Any], list_kind: str | None) -> str | None:
    kind = item.get("kind")
    if isinstance(kind, str) and kind:
        return kind
    if list_kind in _LIST_KINDS:
        return _LIST_KINDS[list_kind]
    # Items straight from the API lack kind/apiVersion; tell them apart by shape.
    spec = item.get("spec")
    status = item.get("status")
    if isinstance(spec, Mapping) and ("containers" in spec or "nodeName" in spec):
        return "Pod"
    if isinstance(status, Mapping) and ("allocatable" in status or "nodeInfo" in status):
        return "Node"
    return None


def _item_name(item: Mapping[str, Any]) -> str:
    meta = item.get("metadata")
    if isinstance(meta, Mapping) and isinstance(meta.get("name"), str):
        ns = meta.get("namespace")
        return f"{ns}/{meta['name']}" if isinstance(ns, str) and ns else meta["name"]
    return "(no name)"


def parse_snapshot(data: Any, *, source: str = "snapshot") -> Snapshot:
    """Split a decoded snapshot into Node and Pod objects.

    Raises :class:`InputError` when ``data`` is not a list of Kubernetes objects or holds
    no Node at all; items of other kinds are skipped with a warning.
    """
    list_kind = None
    if isinstance(data, Mapping):
        items = data.get("items")
        list_kind = data.get("kind") if isinstance(data.get("kind"), str) else None
        if items is None:
            what = f"a {list_kind} object" if list_kind else "a JSON object"
            raise InputError(
                f"{source} is {what} without 'items'; expected the output of `{SNAPSHOT_HINT}`"
            )
        if not isinstance(items, list):
            raise InputError(
                f"{source}: 'items' is {_json_type(items)}, not a list of Kubernetes objects"
            )
    elif isinstance(data, list):
        items = data
    else:
        raise InputError(
            f"{source} holds {_json_type(data)}; expected the output of `{SNAPSHOT_HINT}`"
        )
    snap = Snapshot(source=source)
    others: dict[str, int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InputError(
                f"{source}: items[{i}] is {_json_type(item)}, not a Kubernetes object; "
                f"expected the output of `{SNAPSHOT_HINT}`"
            )
        kind = _guess_kind(item, list_kind)
        if kind == "Node":
            snap.nodes.append(dict(item))
            snap.node_items.append(i)
        elif kind == "Pod":
            snap.pods.append(dict(item))
            snap.pod_items.append(i)
        elif kind is None:
            snap.warnings.append(
                f"{source}: items[{i}] ({_item_name(item)}) has no kind and is neither"
                " a Node nor a Pod; skipped"
            )
        else:
            others[kind] = others.get(kind, 0) + 1
    if others:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(others.items()))
        snap.warnings.append(f"{source}: skipped items that are neither Node nor Pod ({kinds})")
    if not snap.nodes:
        raise InputError(
            f"{source} holds no Node objects ({len(items)} item(s)); expected the output of "
            f"`{SNAPSHOT_HINT}`"
        )
    return snap


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def load_snapshot(source: str, *, stdin: BinaryIO | None = None) -> Snapshot:
    """Read and split the snapshot in file ``source`` (``-`` for stdin)."""
    name = "<stdin>" if source == "-" else source
    return parse_snapshot(read_json(source, stdin=stdin), source=name)


def build_state(snapshot: Snapshot) -> tuple[ClusterState, list[str]]:
    """Apply every Node, then every Pod. Returns the state and one warning per problem.

    Nodes that cannot be parsed at all (no name) and their garbled parts
    (``NodeInfo.problems``) become warnings; so do Pods that cannot be parsed.
    """
    state = ClusterState()
    warnings = list(snapshot.warnings)
    for i, obj in enumerate(snapshot.nodes):
        try:
            node = state.apply_node_event(ADDED, obj)
        except ValueError as e:
            where = snapshot.where("Node", i)
            warnings.append(f"{snapshot.source}: {where} skipped: {_one_line(e)}")
            continue
        if node is not None:
            warnings.extend(f"node {node.name}: {_one_line(p)}" for p in node.problems)
    for i, obj in enumerate(snapshot.pods):
        try:
            state.apply_pod_event(ADDED, obj)
        except ValueError as e:
            where = snapshot.where("Pod", i)
            warnings.append(f"{snapshot.source}: {where} skipped: {_one_line(e)}")
    return state, warnings


# --------------------------------------------------------------------------- config


def _error_line(path: str, exc: BaseException) -> int | None:
    """The line of ``path`` where ``exc`` was raised (innermost frame in that file)."""
    if isinstance(exc, SyntaxError) and exc.filename == path:
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == path:
            line = frame.lineno
    return line


def _describe_exception(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    if isinstance(exc, SystemExit):
        return f"the config called exit({exc.code!r})"
    text = _one_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_config(path: str):
    """Execute a ``jupyterhub_config.py`` as JupyterHub does; return its ``Config``.

    The file runs with ``c`` and ``get_config()`` bound to one fresh
    :class:`traitlets.config.Config` (and ``load_subconfig`` for files next to it).
    Anything it prints goes to stderr, so ``--json`` output stays clean. Raises
    :class:`InputError` with ``file:line: error`` if it cannot be read or fails.
    """
    from traitlets.config import Config

    config = Config()
    _exec_config(path, config)
    return config


def _exec_config(path: str, config, *, depth: int = 0) -> None:
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        raise InputError(f"cannot read config {path}: {e.strerror or _one_line(e)}") from None
    if depth > 10:
        raise InputError(f"{path}: load_subconfig nested too deeply")

    def load_subconfig(fname: str, profile: str | None = None) -> None:
        sub = fname if os.path.isabs(fname) else os.path.join(os.path.dirname(path), fname)
        _exec_config(sub, config, depth=depth + 1)

    namespace = {
        "c": config,
        "get_config": lambda: config,
        "load_subconfig": load_subconfig,
        "__file__": path,
        "__name__": "__main__",
    }
    try:
        code = compile(source, path, "exec", dont_inherit=True)
        with contextlib.redirect_stdout(sys.stderr):
            exec(code, namespace)
    except InputError:
        raise
    except (Exception, SystemExit) as e:
        line = _error_line(path, e)
        where = f"{path}:{line}" if line else path
        raise InputError(f"{where}: {_describe_exception(e)}") from None


def _setting(section: Any, key: str, default: Any) -> Any:
    from traitlets.config import LazyConfigValue

    if section is None or key not in section:
        return default
    value = section[key]
    if isinstance(value, LazyConfigValue):  # c.MIGSpawner.tiers.update({...})
        value = value.get_value(default)
    return value


def _section(config: Any, name: str) -> Any:
    return config.get(name)


def policy_from_config(config: Any, *, source: str = "config") -> Policy:
    """Build the policy from ``c.MIGSpawner.*``; :class:`InputError` if it is invalid."""
    section = _section(config, "MIGSpawner")
    settings = {key: _setting(section, key, default) for key, default in POLICY_SETTINGS.items()}
    charge = settings["charge"]
    if isinstance(charge, str):
        settings["charge"] = charge.lower()  # MIGSpawner.charge is caseless
    try:
        return build_policy(**settings)
    except ConfigError as e:
        raise InputError(f"{source}: {_one_line(e)}") from None


def _users_of(where: str, value: Any) -> list[str]:
    if isinstance(value, Mapping):  # JupyterHub >= 5: {"users": [...], "properties": {...}}
        value = value.get("users") or []
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise InputError(
            f"{where} must be a list of user names or a dict with a 'users' list, not {value!r}"
        )
    return [str(u) for u in value]


def load_groups(config: Any, *, source: str = "config") -> dict[str, list[str]]:
    """``c.JupyterHub.load_groups`` as ``{group: [users]}`` (either form JupyterHub accepts)."""
    groups = _setting(_section(config, "JupyterHub"), "load_groups", {})
    if not isinstance(groups, Mapping):
        raise InputError(f"{source}: JupyterHub.load_groups must map group names to members")
    return {
        str(g): _users_of(f"{source}: JupyterHub.load_groups[{g!r}]", v) for g, v in groups.items()
    }


def groups_from_config(config: Any, user: str, *, source: str = "config") -> tuple[str, ...]:
    """The groups ``c.JupyterHub.load_groups`` puts ``user`` in, in the order listed."""
    return tuple(g for g, users in load_groups(config, source=source).items() if user in users)


def parse_groups(text: str) -> tuple[str, ...]:
    """``"vision, nlp"`` -> ``("vision", "nlp")``; an empty string is no groups."""
    seen: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if part and part not in seen:
            seen.append(part)
    return tuple(seen)


# --------------------------------------------------------------------------- explain


@dataclass
class Explanation:
    """One ``explain`` run: the decision, the policy and request behind it, and warnings."""

    decision: Decision
    policy: Policy
    request: SpawnRequest
    warnings: list[str]
    state: ClusterState

    def to_dict(self) -> dict[str, Any]:
        """``Decision.to_dict()`` plus ``warnings``: what ``explain --json`` prints."""
        return {**self.decision.to_dict(), "warnings": list(self.warnings)}


def explain(
    *,
    cluster: str,
    config: str,
    user: str,
    tier: str,
    groups: Sequence[str] | None = None,
    team: str | None = None,
    stdin: BinaryIO | None = None,
) -> Explanation:
    """Load ``cluster`` and ``config`` and decide what ``user`` would get for ``tier``.

    ``groups=None`` takes the user's groups from the config's ``load_groups``.
    Raises :class:`InputError` for unusable input; a refusal is a decision, not an error.
    """
    hub_config = load_config(config)
    policy = policy_from_config(hub_config, source=config)
    if groups is None:
        groups = groups_from_config(hub_config, user, source=config)
    snapshot = load_snapshot(cluster, stdin=stdin)
    state, warnings = build_state(snapshot)
    request = SpawnRequest(user=user, tier=tier, groups=tuple(groups), team=team or None)
    return Explanation(decide(request, policy, state), policy, request, warnings, state)


# --------------------------------------------------------------------------- rendering


def _tier_summary(tier: Tier) -> str:
    size = f"{tier.compute_slices}g"
    if tier.max_compute_slices != tier.compute_slices:
        size += f" to {tier.max_compute_slices}g"
    parts = [size, f">= {tier.min_memory_gb:g} GB"]
    if not tier.fallback:
        parts.append("no fallback")
    elif tier.max_fallback_steps is not None:
        parts.append(f"fallback up to {tier.max_fallback_steps} step(s)")
    else:
        parts.append("fallback")
    if tier.chain is not None:
        parts.append(f"chain {', '.join(tier.chain)}")
    if tier.groups:
        parts.append(f"for {', '.join(sorted(tier.groups))}")
    return ", ".join(parts)


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        (indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))).rstrip()
        for row in rows
    ]


def render_report(exp: Explanation) -> str:
    """The human-readable ``explain`` report: tier, team, chain walked, verdict, message."""
    d, req = exp.decision, exp.request
    tier = exp.policy.tier(d.tier)
    lines = []
    if tier is not None:
        lines.append(f"Tier:     {tier.slug} ({tier.display_name}): {_tier_summary(tier)}")
    else:
        lines.append(f"Tier:     {req.tier} (not defined)")
    groups = ", ".join(req.groups) if req.groups else "none"
    lines.append(f"User:     {req.user} (groups: {groups})")
    if d.team or req.team:
        team = d.team or req.team
    elif d.code in (UNKNOWN_TIER, FORBIDDEN_TIER):
        team = "-"
    else:
        team = "none: the personal default quota applies"
    lines.append(f"Team:     {team}")
    if d.candidates:
        lines.append("Chain walked:")
        rows = [["step", "profile", "GPU", "free/total", "outcome", "reason"]]
        rows += [
            [
                str(c.step),
                c.slice_type.profile,
                c.slice_type.gpu_name,
                f"{c.free}/{c.total}",
                c.outcome,
                c.reason,
            ]
            for c in d.candidates
        ]
        lines += _table(rows)
    elif d.code == NO_MATCHING_GPU:
        lines.append("Chain walked: (empty: no slice type in the cluster fits this tier)")
    if d.admitted and d.granted is not None:
        how = " (fallback)" if d.fallback else ""
        lines.append(
            f"Verdict:  ADMITTED{how}: {d.granted.label} (node {d.node}),"
            f" resource {d.granted.resource}"
        )
        selector = ", ".join(f"{k}={v}" for k, v in d.node_selector.items())
        if selector:
            lines.append(f"Selector: {selector}")
    else:
        lines.append(f"Verdict:  REFUSED ({d.code})")
    if d.quota is not None:
        q = d.quota.to_dict(d.charge_mode)
        limit = "no limit" if q["limit"] is None else f"limit {q['limit']}"
        lines.append(
            f"Quota:    {q['unit']}: {q['used']} used, {limit}, this server needs"
            f" {q['needed']} (charged as {q['charge']})"
        )
    lines.append(f"Message:  {d.message}")
    return "\n".join(lines)


def _mib(value: int | None) -> str:
    return "?" if value is None else f"{value} MiB"


def _opt(value: int | None) -> str:
    return "?" if value is None else str(value)


def render_catalog(catalog: Catalog) -> str:
    """Every GPU model with its products and profiles, as readable tables."""
    out: list[str] = []
    for model in catalog:
        if out:
            out.append("")
        memory = f", {_mib(model.memory_mib)}" if model.memory_mib else ""
        out.append(
            f"{model.display_name} [{model.key}]: {model.compute_slices} compute /"
            f" {model.memory_slices} memory slices{memory}"
        )
        out.append(f"  products: {', '.join(model.products)}")
        rows = [["profile", "g", "memory", "SMs", "max", "resource"]]
        rows += [
            [
                p.name,
                str(p.compute_slices),
                f"{p.memory_gb} GB ({_mib(p.memory_mib)})",
                _opt(p.sm_count),
                _opt(p.max_instances),
                p.resource,
            ]
            for p in model.profiles
        ]
        out += _table(rows)
    return "\n".join(out)
