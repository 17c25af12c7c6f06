"""API-server defaulting and validation: names, labels, pod specs, pod update rules.

Only the checks that code talking to a real cluster can trip over are here: object names,
label syntax, containers with a name and an image, resource quantities and the
extended-resource rules (limits required, requests equal to limits, integers), and the
"pods are immutable except ..." update rule.
"""

from __future__ import annotations

import re
from typing import Any

from .quantity import parse_quantity
from .status import ApiError, invalid

_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_NAME_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE_RE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_DNS_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
POD_UPDATE_FORBIDDEN = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)"
)
#: The resources the kubelet and scheduler understand natively (may be overcommitted).
NATIVE_RESOURCES = {"cpu", "memory", "ephemeral-storage", "pods"}


def is_extended_resource(name: str) -> bool:
    """``nvidia.com/gpu`` yes; ``cpu``, ``hugepages-2Mi`` and ``*.kubernetes.io/*`` no."""
    if name in NATIVE_RESOURCES or name.startswith("hugepages-") or "/" not in name:
        return False
    domain = name.split("/", 1)[0]
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))


def name_errors(name: str, kind: str) -> list[tuple[str, str]]:
    if len(name) > 253 or not _DNS_SUBDOMAIN_RE.fullmatch(name):
        return [("metadata.name", f'Invalid value: "{name}": {_SUBDOMAIN_MSG}')]
    if kind == "Namespace" and (len(name) > 63 or not _DNS_LABEL_RE.fullmatch(name)):
        return [("metadata.name", f'Invalid value: "{name}": {_DNS_LABEL_MSG}')]
    return []


def check_string_map(meta: dict[str, Any], field: str) -> None:
    """Labels and annotations must be string -> string (else JSON decoding fails: 400)."""
    value = meta.get(field)
    if value is None:
        return
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ApiError(
            400,
            f"json: cannot unmarshal {value!r} into Go struct field ObjectMeta.metadata.{field} "
            "of type map[string]string",
        )


def label_errors(labels: dict[str, str]) -> list[tuple[str, str]]:
    errors = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (
            not name
            or len(name) > 63
            or not _LABEL_NAME_RE.fullmatch(name)
            or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.fullmatch(prefix)))
        ):
            errors.append(("metadata.labels", f'Invalid value: "{key}": name part must be valid'))
        if len(value) > 63:
            errors.append(
                ("metadata.labels", f'Invalid value: "{value}": must be no more than 63 characters')
            )
        elif not _LABEL_VALUE_RE.fullmatch(value):
            errors.append(("metadata.labels", f'Invalid value: "{value}": {_LABEL_VALUE_MSG}'))
    return errors


def validate_metadata(obj: dict[str, Any], kind: str) -> None:
    meta = obj.setdefault("metadata", {})
    check_string_map(meta, "labels")
    check_string_map(meta, "annotations")
    name = meta.get("name") or ""
    errors = name_errors(name, kind) if name else []
    errors += label_errors(meta.get("labels") or {})
    if errors:
        raise invalid(kind, name, errors)


def _container_errors(containers: Any, path: str) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, container in enumerate(containers or []):
        where = f"{path}[{i}]"
        name = container.get("name") if isinstance(container, dict) else None
        if not name:
            errors.append((f"{where}.name", "Required value"))
        elif not _DNS_LABEL_RE.fullmatch(name):
            errors.append((f"{where}.name", f'Invalid value: "{name}": {_DNS_LABEL_MSG}'))
        elif name in seen:
            errors.append((f"{where}.name", f'Duplicate value: "{name}"'))
        seen.add(name or "")
        if not (container or {}).get("image"):
            errors.append((f"{where}.image", "Required value"))
        errors += _resource_errors((container or {}).get("resources") or {}, f"{where}.resources")
    return errors


def _resource_errors(resources: dict[str, Any], path: str) -> list[tuple[str, str]]:
    errors = []
    parsed: dict[str, dict[str, Any]] = {}
    for part in ("requests", "limits"):
        parsed[part] = {}
        for name, raw in (resources.get(part) or {}).items():
            try:
                parsed[part][name] = parse_quantity(raw)
            except ValueError as exc:
                errors.append((f"{path}.{part}[{name}]", f'Invalid value: "{raw}": {exc}'))
                continue
            if is_extended_resource(name) and parsed[part][name].denominator != 1:
                errors.append(
                    (f"{path}.{part}[{name}]", f'Invalid value: "{raw}": must be an integer')
                )
    requests, limits = parsed["requests"], parsed["limits"]
    for name, request in requests.items():
        if is_extended_resource(name):
            if name not in limits:
                errors.append(
                    (
                        f"{path}.limits",
                        "Required value: Limit must be set for non overcommitable resources",
                    )
                )
            elif request != limits[name]:
                errors.append(
                    (
                        f"{path}.requests[{name}]",
                        f'Invalid value: "{resources["requests"][name]}": must be equal to '
                        f"{name} limit of {resources['limits'][name]}",
                    )
                )
        elif name in limits and request > limits[name]:
            errors.append(
                (
                    f"{path}.requests",
                    f'Invalid value: "{resources["requests"][name]}": must be less than or '
                    f"equal to {name} limit of {resources['limits'][name]}",
                )
            )
    return errors


def default_pod(pod: dict[str, Any]) -> None:
    """What API-server defaulting and the default admission plugins add to a new pod."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    tolerations = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(
            t.get("key") == key and t.get("effect") in (None, "", "NoExecute") for t in tolerations
        ):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            )
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            image = container.get("image") or ""
            tag = image.rsplit("/", 1)[-1]
            latest = ":" not in tag or tag.endswith(":latest")
            container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            for port in container.get("ports") or []:
                port.setdefault("protocol", "TCP")
            resources = container.setdefault("resources", {})
            limits = resources.get("limits") or {}
            if limits:
                requests = resources.setdefault("requests", {})
                for name, value in limits.items():
                    requests.setdefault(name, value)
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def qos_class(spec: dict[str, Any]) -> str:
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set, guaranteed = False, True
    for container in containers:
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        for name in ("cpu", "memory"):
            if name in requests or name in limits:
                any_set = True
            if name not in limits or (name in requests and requests[name] != limits[name]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def validate_pod(pod: dict[str, Any]) -> None:
    name = pod["metadata"].get("name", "")
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise invalid("Pod", name, [("spec.containers", "Required value")])
    errors = []
    if not spec.get("containers"):
        errors.append(("spec.containers", "Required value"))
    errors += _container_errors(spec.get("containers"), "spec.containers")
    errors += _container_errors(spec.get("initContainers"), "spec.initContainers")
    for i, toleration in enumerate(spec.get("tolerations") or []):
        effect = toleration.get("effect")
        if effect not in (None, "", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            errors.append((f"spec.tolerations[{i}].effect", f'Unsupported value: "{effect}"'))
    if errors:
        raise invalid("Pod", name, errors)


#: The most bytes a ConfigMap's data and binaryData may hold together (the API server's).
CONFIGMAP_MAX_BYTES = 1024 * 1024
_CONFIG_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+")


def validate_configmap(cm: dict[str, Any]) -> None:
    """Keys of data/binaryData are config keys; the values together fit in 1 MiB."""
    name = cm["metadata"].get("name", "")
    errors = []
    size = 0
    for field in ("data", "binaryData"):
        values = cm.get(field) or {}
        if not isinstance(values, dict):
            raise ApiError(400, f"{field} of the ConfigMap must be a map of strings")
        for key, value in values.items():
            if not isinstance(value, str):
                raise ApiError(400, f"{field}.{key} of the ConfigMap must be a string")
            if not _CONFIG_KEY_RE.fullmatch(key) or len(key) > 253:
                errors.append(
                    (
                        f"{field}[{key}]",
                        f'Invalid value: "{key}": a valid config key must consist of '
                        "alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
                        "'KEY_NAME',  or 'key-name', regex used for validation is "
                        "'[-._a-zA-Z0-9]+')",
                    )
                )
            size += len(key) + len(value.encode("utf-8"))
    if size > CONFIGMAP_MAX_BYTES:
        errors.append(("[]", f"Too long: may not be more than {CONFIGMAP_MAX_BYTES} bytes"))
    if errors:
        raise invalid("ConfigMap", name, errors)


def validate_pod_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Only images, activeDeadlineSeconds and added tolerations may change in a pod's spec."""

    def mutable_stripped(spec: dict[str, Any]) -> dict[str, Any]:
        spec = {k: v for k, v in spec.items() if k not in ("activeDeadlineSeconds", "tolerations")}
        for field in ("containers", "initContainers"):
            if field in spec:
                spec[field] = [{k: v for k, v in c.items() if k != "image"} for c in spec[field]]
        return spec

    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    old_tolerations = old_spec.get("tolerations") or []
    new_tolerations = new_spec.get("tolerations") or []
    if (
        mutable_stripped(old_spec) != mutable_stripped(new_spec)
        or new_tolerations[: len(old_tolerations)] != old_tolerations
    ):
        raise invalid("Pod", old["metadata"]["name"], [("spec", POD_UPDATE_FORBIDDEN)])
