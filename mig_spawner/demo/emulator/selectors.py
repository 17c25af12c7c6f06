"""Label and field selectors, parsed and matched the way the API server does.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a``, ``!a``,
``a>1``, ``a<1``, comma-joined (AND). ``!=`` and ``notin`` also match objects without the label.

Field selectors: ``field=value``, ``field==value``, ``field!=value``, comma-joined, over the
fields the API server indexes for each kind (anything else is a 400 "field label not
supported"). A missing field reads as the empty string, so ``spec.nodeName=`` selects
unscheduled pods.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .status import bad_request

_KEY_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$")
_VALUE_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?$")
_SET_RE = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$", re.S)
_OP_RE = re.compile(r"^([^\s=!<>()]+)\s*(==|=|!=|>|<)\s*(.*)$", re.S)


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if not present:
            return False
        try:
            number, bound = int(value), int(self.values[0])
        except (TypeError, ValueError):
            return False
        return number > bound if self.op == ">" else number < bound


def _split_top_level(selector: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def _check_key(key: str, part: str) -> str:
    if not _KEY_RE.match(key) or len(key) > 317:
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in {part!r}")
    return key


def _check_value(value: str, part: str) -> str:
    if not _VALUE_RE.match(value) or len(value) > 63:
        raise bad_request(f"unable to parse requirement: invalid label value {value!r} in {part!r}")
    return value


def parse_label_selector(selector: str | None) -> tuple[Requirement, ...]:
    """Parse a label selector; raises a 400 :class:`ApiError` for a malformed one."""
    if selector is None or not selector.strip():
        return ()
    requirements = []
    for part in _split_top_level(selector):
        if not part:
            raise bad_request(f"unable to parse requirement: empty requirement in {selector!r}")
        if part.startswith("!"):
            requirements.append(Requirement(_check_key(part[1:].strip(), part), "!"))
            continue
        match = _SET_RE.match(part)
        if match:
            key, op, inner = match.groups()
            values = tuple(_check_value(v.strip(), part) for v in inner.split(","))
            requirements.append(Requirement(_check_key(key, part), op, values))
            continue
        match = _OP_RE.match(part)
        if match:
            key, op, value = match.groups()
            value = value.strip()
            if op in (">", "<"):
                if not re.fullmatch(r"-?[0-9]+", value):
                    raise bad_request(f"unable to parse requirement: {part!r}: not an integer")
            else:
                _check_value(value, part)
            op = "=" if op == "==" else op
            requirements.append(Requirement(_check_key(key, part), op, (value,)))
            continue
        requirements.append(Requirement(_check_key(part, part), "exists"))
    return tuple(requirements)


def labels_match(requirements: tuple[Requirement, ...], obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


def _path(*keys: str) -> Callable[[dict[str, Any]], str]:
    def get(obj: dict[str, Any]) -> str:
        value: Any = obj
        for key in keys:
            if not isinstance(value, dict):
                return ""
            value = value.get(key)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return get


def _unschedulable(obj: dict[str, Any]) -> str:
    return "true" if (obj.get("spec") or {}).get("unschedulable") else "false"


_COMMON = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}
#: Per kind (plural), the fields its field selectors may use (as the API server indexes them).
FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], str]]] = {
    "pods": {
        **_COMMON,
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": lambda o: (
            "true" if (o.get("spec") or {}).get("hostNetwork") else "false"
        ),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "nodes": {**_COMMON, "spec.unschedulable": _unschedulable},
    "events": {
        **_COMMON,
        "involvedObject.kind": _path("involvedObject", "kind"),
        "involvedObject.namespace": _path("involvedObject", "namespace"),
        "involvedObject.name": _path("involvedObject", "name"),
        "involvedObject.uid": _path("involvedObject", "uid"),
        "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
        "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
        "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _path("source", "component"),
        "type": _path("type"),
    },
    "namespaces": {**_COMMON, "status.phase": _path("status", "phase")},
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    equal: bool
    value: str
    get: Callable[[dict[str, Any]], str]

    def matches(self, obj: dict[str, Any]) -> bool:
        return (self.get(obj) == self.value) == self.equal


def parse_field_selector(selector: str | None, plural: str) -> tuple[FieldRequirement, ...]:
    """Parse a field selector for ``plural``; 400 for bad syntax or an unsupported field."""
    if selector is None or not selector.strip():
        return ()
    fields = FIELDS.get(plural, _COMMON)
    requirements = []
    for part in selector.split(","):
        part = part.strip()
        op = next((o for o in ("!=", "==", "=") if o in part), None)
        if op is None:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        field, value = part.split(op, 1)
        equal = op != "!="
        field = field.strip()
        if field not in fields:
            raise bad_request(f"field label not supported: {field}")
        requirements.append(FieldRequirement(field, equal, value.strip(), fields[field]))
    return tuple(requirements)


def fields_match(requirements: tuple[FieldRequirement, ...], obj: dict[str, Any]) -> bool:
    return all(r.matches(obj) for r in requirements)


@dataclass(frozen=True)
class Selector:
    """A parsed label plus field selector."""

    labels: tuple[Requirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, plural: str, label_selector: str | None, field_selector: str | None):
        return cls(
            parse_label_selector(label_selector), parse_field_selector(field_selector, plural)
        )

    def matches(self, obj: dict[str, Any] | None) -> bool:
        return obj is not None and labels_match(self.labels, obj) and fields_match(self.fields, obj)
