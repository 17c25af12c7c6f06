"""Where an admitted pod may run: pinned to the node its slice was reserved on.

Without the pin the scheduler may bind the pod to any node with the same GPU model (or,
for a node GPU Feature Discovery has not labelled, anywhere), onto a slice reserved for
someone else. The pin is a required node-affinity term, merged with the admin's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .nodes import NodeInfo

HOSTNAME_LABEL = "kubernetes.io/hostname"


def pin_expression(node: NodeInfo | str) -> tuple[str, dict[str, Any]]:
    """('matchExpressions' | 'matchFields', requirement) selecting exactly ``node``.

    By its ``kubernetes.io/hostname`` label when it has one (the usual pin), else by
    ``metadata.name`` (a hostname label may be missing, or differ from the node's name).
    """
    if isinstance(node, NodeInfo) and node.labels.get(HOSTNAME_LABEL):
        value = node.labels[HOSTNAME_LABEL]
        return "matchExpressions", {"key": HOSTNAME_LABEL, "operator": "In", "values": [value]}
    name = node.name if isinstance(node, NodeInfo) else node
    return "matchFields", {"key": "metadata.name", "operator": "In", "values": [name]}


def pinned_terms(admin_terms: Iterable[Any], node: NodeInfo | str) -> list[dict[str, Any]]:
    """The admin's required node-selector terms, each also requiring ``node``.

    Terms are ORed by Kubernetes, so the pin is ANDed into every one of them (a separate
    term would let the pod go anywhere the admin's terms allow). No admin terms: one term.
    """
    field, requirement = pin_expression(node)
    terms = [dict(t) for t in _mappings(admin_terms)] or [{}]
    return [{**t, field: [*(t.get(field) or []), requirement]} for t in terms]


def _mappings(terms: Iterable[Any]) -> list[Mapping]:
    """The terms, each a mapping (a pin merged into a term it cannot read would widen it)."""
    out = []
    for term in terms:
        if not isinstance(term, Mapping):
            raise TypeError(f"a node-selector term must be a mapping, not {type(term).__name__}")
        out.append(term)
    return out
