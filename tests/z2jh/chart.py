"""Render the real Zero to JupyterHub 4.4.0 chart with a real helm, and lay out a hub pod.

``render`` runs ``helm template`` on ``../shared/z2jh/chart/jupyterhub`` (or the umbrella
chart, with that chart as its dependency) with values files layered as an operator layers
them. ``hub_pod`` then reads the rendered hub Deployment and lays out what its container
sees: every ConfigMap and Secret volume mounted where the Deployment mounts it (the chart's
``jupyterhub_config.py`` and ``z2jh.py``, ``config/``, ``secret/``), its environment with
``secretKeyRef``/``fieldRef`` resolved, and the ``<SERVICE>_SERVICE_HOST/PORT`` variables
Kubernetes adds for the release's Services. Nothing is invented: a key the chart does not
render is missing here too.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mig_spawner.demo.controlplane.launcher import HELM_VERSION  # the pinned helm

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
CHART = SHARED / "z2jh" / "chart" / "jupyterhub"
HELM_VALUES = ROOT / "helm-values"
UMBRELLA = HELM_VALUES / "umbrella"
#: helm template has no cluster to ask; the chart requires >= 1.28.
KUBE_VERSION = "1.33.0"


def helm() -> str:
    """The helm binary: $MIG_SPAWNER_HELM (the Makefile sets it), else the one make k8s built."""
    path = (
        os.environ.get("MIG_SPAWNER_HELM")
        or subprocess.run(
            [ROOT / "tests/controlplane/build.sh", "--print-dir"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        + "/helm"
    )
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no helm at {path}: run `make helm` (builds helm {HELM_VERSION} once)")
    return path


def _template(chart: Path, values: list[Path], release: str, namespace: str) -> list[dict]:
    cmd = [helm(), "template", release, str(chart), "--namespace", namespace]
    cmd += ["--kube-version", KUBE_VERSION]
    for path in values:
        cmd += ["-f", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def render(
    values: list[Path], *, release: str = "jhub", namespace: str = "jupyterhub"
) -> list[dict]:
    """``helm template RELEASE CHART -n NAMESPACE -f values[0] -f values[1] ...``."""
    return _template(CHART, values, release, namespace)


def render_umbrella(
    workdir: Path, values: list[Path] = (), *, release: str = "jhub", namespace: str = "jupyterhub"
) -> list[dict]:
    """The umbrella chart with the shared 4.4.0 chart as its dependency (no network).

    ``helm dependency update`` would download jupyterhub-4.4.0.tgz; it is the same chart, so
    it is packaged from ../shared into the copy's charts/ as that command would leave it.
    """
    chart = workdir / "umbrella"
    shutil.copytree(UMBRELLA, chart)
    (chart / "charts").mkdir()
    done = subprocess.run(
        [helm(), "package", str(CHART), "--destination", str(chart / "charts")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise AssertionError(f"helm package failed:\n{done.stderr}")
    return _template(chart, [chart / "values.yaml", *values], release, namespace)


def find(manifests: list[dict], kind: str, name: str) -> dict:
    for doc in manifests:
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise KeyError(f"no {kind} {name!r} in the rendered chart")


def _data(obj: dict) -> dict[str, bytes]:
    if obj["kind"] == "Secret":
        out = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        out.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        return out
    return {k: v.encode() for k, v in (obj.get("data") or {}).items()}


def values_seen_by_hub(manifests: list[dict]) -> dict[str, Any]:
    """The values the hub reads back: the chart's hub Secret's values.yaml."""
    return yaml.safe_load(_data(find(manifests, "Secret", "hub"))[b"values.yaml".decode()])


def _service_env(manifests: list[dict], host: str) -> dict[str, str]:
    """The variables Kubernetes sets in a pod for each Service of its namespace."""
    env = {}
    for svc in manifests:
        if svc.get("kind") != "Service":
            continue
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        ports = svc["spec"].get("ports") or []
        if not ports:
            continue
        env[f"{prefix}_SERVICE_HOST"] = host
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                    port["port"]
                )
    return env


@dataclass
class HubPod:
    """The hub container of the rendered chart, laid out under ``root``."""

    root: Path  # a stand-in for the container's filesystem: root/usr/local/etc/jupyterhub/...
    command: list[str]
    env: dict[str, str]
    workdir: Path  # where /srv/jupyterhub (the hub's PVC, its cwd) is
    proxy_command: list[str]
    values: dict[str, Any]


def _resolve_env(entries: list[dict], objects: dict, namespace: str) -> dict[str, str]:
    env = {}
    for entry in entries or []:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        source = entry.get("valueFrom") or {}
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[entry["name"]] = _data(objects[("Secret", ref["name"])])[ref["key"]].decode()
        elif "fieldRef" in source:
            field = source["fieldRef"]["fieldPath"]
            env[entry["name"]] = {"metadata.namespace": namespace}.get(field, "")
    return env


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion in a container's command and args."""
    out = []
    for arg in args:
        for key, value in env.items():
            arg = arg.replace(f"$({key})", value)
        out.append(arg)
    return out


def hub_pod(
    manifests: list[dict], root: Path, *, namespace: str = "jupyterhub", existing: list[dict] = ()
) -> HubPod:
    """Lay out the rendered hub container's mounts under ``root``; return how to run it.

    ``existing``: objects the operator created beside the release (a Secret that
    ``hub.extraEnv`` refers to, say), as the cluster would hold them.
    """
    objects = {(d["kind"], d["metadata"]["name"]): d for d in [*existing, *manifests]}
    deployment = find(manifests, "Deployment", "hub")
    spec = deployment["spec"]["template"]["spec"]
    container = next(c for c in spec["containers"] if c["name"] == "hub")
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    workdir = root / "srv" / "jupyterhub"
    workdir.mkdir(parents=True)
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        target = root / mount["mountPath"].lstrip("/")
        if "configMap" in volume:
            data = _data(objects[("ConfigMap", volume["configMap"]["name"])])
            items = volume["configMap"].get("items")
        elif "secret" in volume:
            data = _data(objects[("Secret", volume["secret"]["secretName"])])
            items = volume["secret"].get("items")
        else:  # the PVC at /srv/jupyterhub: an empty directory, as on first install
            target.mkdir(parents=True, exist_ok=True)
            continue
        if items:
            data = {item["path"]: data[item["key"]] for item in items}
        if mount.get("subPath"):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[mount["subPath"]])
        else:
            target.mkdir(parents=True, exist_ok=True)
            for key, value in data.items():
                (target / key).write_bytes(value)
    env = _service_env(manifests, "127.0.0.1")
    env.update(_resolve_env(container.get("env"), objects, namespace))
    command = _expand([*(container.get("command") or []), *(container.get("args") or [])], env)
    proxy = find(manifests, "Deployment", "proxy")["spec"]["template"]["spec"]
    chp = next(c for c in proxy["containers"] if c["name"] == "chp")
    proxy_env = {
        **_service_env(manifests, "127.0.0.1"),
        **_resolve_env(chp.get("env"), objects, namespace),
    }
    proxy_command = _expand([*(chp.get("command") or []), *(chp.get("args") or [])], proxy_env)
    return HubPod(root, command, env, workdir, proxy_command, values_seen_by_hub(manifests))
