"""How the kubelet builds a pod's command line and environment.

* ``$(VAR)`` references in env values, command and args are expanded as Kubernetes does;
* ``env`` entries with a plain ``value`` are used, ``valueFrom.fieldRef`` is resolved
  (metadata.name/namespace/uid, labels and annotations, spec.nodeName,
  spec.serviceAccountName, status.podIP, status.hostIP), other ``valueFrom`` sources are
  ignored;
* the server must listen on the pod's own IP, so ``--ip=...`` and a wildcard host
  (0.0.0.0, localhost, ::) in ``JUPYTERHUB_SERVICE_URL`` are rewritten to it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_VAR_RE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_WILDCARD_HOSTS = ("0.0.0.0", "localhost", "", "::", "[::]")
_FIELD_REF_RE = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined variables are substituted, ``$$`` escapes."""

    def sub(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_RE.sub(sub, value)


def container_port(container: dict[str, Any], env: dict[str, str]) -> int:
    """``--port=N`` in the args, else the first containerPort, else the port of
    ``JUPYTERHUB_SERVICE_URL``, else 8888."""
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    for i, arg in enumerate(argv):
        if arg.startswith("--port="):
            return int(arg.split("=", 1)[1])
        if arg == "--port" and i + 1 < len(argv):
            return int(argv[i + 1])
    for port in container.get("ports") or []:
        if port.get("containerPort"):
            return int(port["containerPort"])
    url = env.get("JUPYTERHUB_SERVICE_URL")
    if url and urlsplit(url).port:
        return int(urlsplit(url).port)
    return 8888


def _field_ref(pod: dict[str, Any], path: str) -> str:
    simple = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"].get("namespace", ""),
        "metadata.uid": pod["metadata"].get("uid", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.podIP": (pod.get("status") or {}).get("podIP", ""),
        "status.hostIP": (pod.get("status") or {}).get("hostIP", ""),
    }
    if path in simple:
        return simple[path] or ""
    match = _FIELD_REF_RE.match(path)
    if match:
        return (pod["metadata"].get(match.group(1)) or {}).get(match.group(2), "")
    return ""


def container_env(
    pod: dict[str, Any], container: dict[str, Any], base: dict[str, str]
) -> dict[str, str]:
    """``base`` plus the container's ``env``: plain values (with ``$(VAR)`` expansion) and
    ``fieldRef`` values; other ``valueFrom`` sources are ignored."""
    env = dict(base)
    for var in container.get("env") or []:
        if "value" in var and var["value"] is not None:
            env[var["name"]] = expand(str(var["value"]), env)
        elif ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath"):
            env[var["name"]] = _field_ref(pod, var["valueFrom"]["fieldRef"]["fieldPath"])
    return env


def rewrite_for_pod_ip(
    argv: list[str], env: dict[str, str], ip: str
) -> tuple[list[str], dict[str, str]]:
    """Point ``--ip`` and a wildcard host in ``JUPYTERHUB_SERVICE_URL`` at the pod's own IP."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg.startswith("--ip="):
            out.append(f"--ip={ip}")
        elif arg == "--ip" and i + 1 < len(argv):
            out += ["--ip", ip]
            skip = True
        else:
            out.append(arg)
    env = dict(env)
    url = env.get("JUPYTERHUB_SERVICE_URL")
    if url:
        parts = urlsplit(url)
        if parts.hostname in _WILDCARD_HOSTS or parts.netloc.startswith("["):
            netloc = f"{ip}:{parts.port}" if parts.port else ip
            env["JUPYTERHUB_SERVICE_URL"] = urlunsplit(parts._replace(netloc=netloc))
    return out, env
