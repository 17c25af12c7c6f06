"""Reading a cluster snapshot (``kubectl get nodes,pods -A -o json``) into ClusterState.

Pure functions: they return data or raise :class:`InputError` with one line naming the
file at fault. :func:`load_snapshot` accepts a ``List``, a ``NodeList``/``PodList`` or a
bare JSON list of such items (``-`` for stdin); :func:`build_state` applies every Node
then every Pod and collects the problems of garbled objects as warnings.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..core.catalog import default_catalog
from ..core.cluster import ADDED, ClusterState
from ..core.errors import InputError
from ..core.pods import Trust

#: What to run to get a snapshot; quoted in error messages.
SNAPSHOT_HINT = "kubectl get nodes,pods -A -o json"
_LIST_KINDS = {"NodeList": "Node", "PodList": "Pod"}


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
    #: ConfigMaps ``mig-spawner-line-*``: a hub's saved waiting line (``status`` shows it)
    line_configmaps: list[dict[str, Any]] = field(default_factory=list)

    def where(self, kind: str, i: int) -> str:
        items = self.node_items if kind == "Node" else self.pod_items
        return f"items[{items[i]}]" if i < len(items) else f"{kind} #{i + 1}"


def one_line(text: object) -> str:
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
        raise InputError(f"cannot read {name}: {e.strerror or one_line(e)}") from None
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
        elif kind == "ConfigMap" and _is_line(item):
            snap.line_configmaps.append(dict(item))
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


def _is_line(item: Mapping[str, Any]) -> bool:
    meta = item.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return isinstance(name, str) and name.startswith("mig-spawner-line-")


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


def build_state(snapshot: Snapshot, trust: Trust | None = None) -> tuple[ClusterState, list[str]]:
    """Apply every Node, then every Pod. Returns the state and one warning per problem.

    Nodes that cannot be parsed at all (no name) and their garbled parts
    (``NodeInfo.problems``) become warnings; so do Pods that cannot be parsed. ``trust``:
    which pods are the hub's (count toward quotas); default any marked pod.
    """
    state = ClusterState(trust, default_catalog())
    warnings = list(snapshot.warnings)
    for i, obj in enumerate(snapshot.nodes):
        try:
            node = state.apply_node_event(ADDED, obj)
        except ValueError as e:
            where = snapshot.where("Node", i)
            warnings.append(f"{snapshot.source}: {where} skipped: {one_line(e)}")
            continue
        if node is not None:
            warnings.extend(f"node {node.name}: {one_line(p)}" for p in node.problems)
    for i, obj in enumerate(snapshot.pods):
        try:
            state.apply_pod_event(ADDED, obj)
        except ValueError as e:
            where = snapshot.where("Pod", i)
            warnings.append(f"{snapshot.source}: {where} skipped: {one_line(e)}")
    return state, warnings
