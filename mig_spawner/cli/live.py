"""Reading the live cluster for ``status`` and ``explain``: read-only, two paged lists.

:func:`load_live` lists Nodes and Pods (all namespaces) through ``kubernetes_asyncio``
from a kubeconfig (``--kubeconfig``, ``$KUBECONFIG`` or ``~/.kube/config``) or the
in-cluster service account (``--in-cluster``) and returns the same
:class:`~mig_spawner.cli.snapshot.Snapshot` a snapshot file gives, so the state is built and
decided on exactly as for a file. It calls nothing but ``list`` (the verbs of the hub's own
ClusterRole) and, for ``status``, ``get`` on the hub's waiting line ConfigMap: it never
watches, creates or patches. Every failure is an
:class:`~mig_spawner.cli.snapshot.InputError` of one line.

What a live read cannot see: the hub's reservations in flight (admitted spawns whose pod is
not bound yet) live only in the hub's memory; ``/hub/metrics`` counts them.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import yaml

from ..core import dra
from .snapshot import InputError, Snapshot, one_line, parse_snapshot

#: Objects per list page (the API server's ``limit``); big clusters are read in pages.
PAGE_SIZE = 500


async def _list_all(call, what: str, timeout: float) -> tuple[list[dict[str, Any]], str]:
    """Every object of one paged list, as plain dicts (no client models)."""
    items: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"limit": PAGE_SIZE, "_preload_content": False}
        if token:
            kwargs["_continue"] = token
        response = await call(_request_timeout=timeout, **kwargs)
        if response.status >= 400:  # raw responses do not raise by themselves
            text = one_line(await response.text())[:200]
            hint = ""
            if response.status in (401, 403):
                hint = f" (the credentials need 'list {what}' cluster-wide)"
            raise InputError(
                f"listing {what}: the API server answered {response.status}{hint}: {text}"
            )
        body = await response.json()
        page = body.get("items") if isinstance(body, dict) else None
        if not isinstance(page, list):
            raise InputError(f"listing {what}: the API server returned no items list")
        items += page
        token = (body.get("metadata") or {}).get("continue")
        if not token:
            return items, str((body.get("metadata") or {}).get("resourceVersion") or "")


def _check_kubeconfig(kubeconfig: str | None) -> None:
    """Fail with one clear line when there is no kubeconfig file to read at all."""
    if kubeconfig:
        if not os.path.isfile(kubeconfig):
            raise InputError(f"cannot read kubeconfig {kubeconfig}: no such file")
        return
    env = os.environ.get("KUBECONFIG", "")
    candidates = [p for p in env.split(os.pathsep) if p] or [os.path.expanduser("~/.kube/config")]
    if not any(os.path.isfile(os.path.expanduser(p)) for p in candidates):
        where = f"$KUBECONFIG ({env})" if env else "~/.kube/config"
        raise InputError(
            f"no kubeconfig: {where} does not exist; pass --kubeconfig FILE or --in-cluster"
        )


async def _read_line(core, line: tuple[str, str], timeout: float) -> tuple[list, list[str]]:
    """([the line's ConfigMap] or [], [a warning]) for ``line`` = (namespace, hub_id)."""
    namespace, hub_id = line
    name = f"mig-spawner-line-{hub_id}"
    response = await core.read_namespaced_config_map(
        name, namespace, _preload_content=False, _request_timeout=timeout
    )
    if response.status == 404:
        return [], []
    if response.status >= 400:
        text = one_line(await response.text())[:200]
        return [], [
            f"the waiting line (ConfigMap {namespace}/{name}) is not shown: the API server "
            f"answered {response.status} (the credentials need 'get configmaps'): {text}"
        ]
    body = await response.json()
    return ([body] if isinstance(body, dict) else []), []


async def _read(
    kubeconfig: str | None,
    context: str | None,
    in_cluster: bool,
    timeout: float,
    line: tuple[str, str] | None = None,
):
    from kubernetes_asyncio import client, config
    from kubernetes_asyncio.config import ConfigException

    cfg = client.Configuration()
    if not in_cluster:
        _check_kubeconfig(kubeconfig)
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=cfg)
        else:
            await config.load_kube_config(
                config_file=kubeconfig or None, context=context, client_configuration=cfg
            )
    except (ConfigException, OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as e:
        where = "the in-cluster service account" if in_cluster else (kubeconfig or "the kubeconfig")
        raise InputError(f"cannot load {where}: {one_line(e) or type(e).__name__}") from None
    async with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        try:
            nodes, _ = await _list_all(core.list_node, "nodes", timeout)
            pods, _ = await _list_all(core.list_pod_for_all_namespaces, "pods", timeout)
            nodes, pods = await _with_dra(client.ResourceV1Api(api), nodes, pods, timeout)
            configmaps, warnings = await _read_line(core, line, timeout) if line else ([], [])
        except InputError:
            raise
        except asyncio.TimeoutError:
            raise InputError(
                f"the API server at {cfg.host} did not answer in {timeout:g} s"
            ) from None
        except Exception as e:  # connection refused, TLS, DNS...: one line, not a traceback
            raise InputError(
                f"cannot reach the API server at {cfg.host}: {type(e).__name__}: {one_line(e)}"
            ) from None
    return cfg.host, nodes, pods, configmaps, warnings


async def _with_dra(resource, nodes: list, pods: list, timeout: float) -> tuple[list, list]:
    """Under DRA (NVIDIA's driver publishes ResourceSlices), the nodes' MIG devices and the
    pods' allocated claims, as the hub's view reads them (core/dra.py); else unchanged (also
    where resource.k8s.io/v1 is not served or not readable)."""
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        slices, _ = await _list_all(resource.list_resource_slice, "resourceslices", timeout)
        if not slices:
            return nodes, pods
        claims, _ = await _list_all(
            resource.list_resource_claim_for_all_namespaces, "resourceclaims", timeout
        )
    except (ApiException, InputError):
        return nodes, pods
    return dra.reshape(nodes, pods, slices, claims)


def load_live(
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    in_cluster: bool = False,
    timeout: float = 30,
    line: tuple[str, str] | None = None,
) -> Snapshot:
    """List the live cluster's Nodes and Pods into a :class:`Snapshot` (read-only); with
    ``line`` = (namespace, hub_id), also get that hub's waiting line ConfigMap."""
    host, nodes, pods, configmaps, warnings = asyncio.run(
        _read(kubeconfig, context, in_cluster, timeout, line)
    )
    for obj in nodes:
        obj.setdefault("kind", "Node")
    for obj in pods:
        obj.setdefault("kind", "Pod")
    for obj in configmaps:
        obj.setdefault("kind", "ConfigMap")
    snap = parse_snapshot(nodes + pods + configmaps, source=f"the cluster at {host}")
    snap.warnings += warnings
    return snap
