"""``mig-spawner advise --apply``: label nodes with their advised mig-parted config.

For each changed node, in name order: skip it if a GPU pod runs there now (read again, not
from the advice's snapshot); cordon it; set ``nvidia.com/mig.config``; wait until
mig-manager reports ``nvidia.com/mig.config.state=success`` (progress on stderr); uncordon
it. The first ``failed`` state (or timeout) stops everything, leaves that node cordoned
for the admin, and exits 1 naming the node and its state. A node that was cordoned
before stays cordoned.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from ..core.replay import MIG_CONFIG_LABEL, MIG_CONFIG_STATE_LABEL
from .advise import CONFIGMAP_NAME, Advice
from .snapshot import InputError, one_line

POLL_S = 0.5


def _say(message: str) -> None:
    print(f"mig-spawner: {message}", file=sys.stderr, flush=True)


def _confirm(nodes: list[str], args) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise InputError("--apply asks for confirmation on a terminal; pass --yes to skip it")
    answer = input(f"Relabel {len(nodes)} node(s) ({', '.join(nodes)})? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def apply_advice(advice: Advice, args) -> int:
    changed = [p for p in advice.plans if p.changed]
    if not changed:
        _say("nothing to apply")
        return 0
    custom = [c for c in advice.configs if c.startswith("mig-spawner-")]
    if custom:
        _say(
            f"custom config(s) {', '.join(custom)}: mig-manager must read the ConfigMap "
            f"{CONFIGMAP_NAME} (printed above) before these labels can succeed"
        )
    if not _confirm([p.name for p in changed], args):
        _say("not applied")
        return 0
    return asyncio.run(_apply(changed, args))


async def _client(args):
    from kubernetes_asyncio import client, config

    cfg = client.Configuration()
    try:
        if args.in_cluster:
            config.load_incluster_config(client_configuration=cfg)
        else:
            await config.load_kube_config(
                config_file=args.kubeconfig or None, context=args.context, client_configuration=cfg
            )
    except Exception as e:
        raise InputError(f"cannot load the kubeconfig: {one_line(e)}") from None
    return client, cfg


async def _busy(core, name: str) -> list[str]:
    pods = await core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={name}")
    out = []
    for pod in pods.items:
        if pod.status.phase in ("Succeeded", "Failed"):
            continue
        for c in pod.spec.containers or []:
            res = c.resources
            wanted = {**((res and res.limits) or {}), **((res and res.requests) or {})}
            if any(k.startswith("nvidia.com/") for k in wanted):
                out.append(f"{pod.metadata.namespace}/{pod.metadata.name}")
                break
    return out


async def _apply(plans, args) -> int:
    client, cfg = await _client(args)
    async with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        for n, plan in enumerate(plans, 1):
            where = f"[{n}/{len(plans)}] node {plan.name}"
            busy = await _busy(core, plan.name)
            if busy:
                _say(f"{where}: skipped, GPU pods run there ({', '.join(busy[:3])})")
                continue
            node = await core.read_node(plan.name)
            was_cordoned = bool(node.spec.unschedulable)
            if not was_cordoned:
                await core.patch_node(plan.name, {"spec": {"unschedulable": True}})
                _say(f"{where}: cordoned")
            # The old state label goes with the old config: any state seen after is new.
            labels = {MIG_CONFIG_LABEL: plan.config, MIG_CONFIG_STATE_LABEL: None}
            await core.patch_node(plan.name, {"metadata": {"labels": labels}})
            _say(f"{where}: labelled {MIG_CONFIG_LABEL}={plan.config}; waiting for mig-manager")
            state = await _wait(core, plan.name, plan.config, args.apply_timeout, where)
            if state != "success":
                _say(
                    f"{where}: {MIG_CONFIG_STATE_LABEL}={state}; stopped here (the node stays "
                    "cordoned; see the mig-manager log on it)"
                )
                return 1
            if not was_cordoned:
                await core.patch_node(plan.name, {"spec": {"unschedulable": None}})
                _say(f"{where}: uncordoned")
            _say(f"{where}: done ({MIG_CONFIG_STATE_LABEL}=success)")
    return 0


async def _wait(core, name: str, config: str, timeout: float, where: str) -> str:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        node = await core.read_node(name)
        labels = node.metadata.labels or {}
        state = labels.get(MIG_CONFIG_STATE_LABEL) or "-"
        if labels.get(MIG_CONFIG_LABEL) == config and state != last:
            _say(f"{where}: {MIG_CONFIG_STATE_LABEL}={state}")
            last = state
        if labels.get(MIG_CONFIG_LABEL) == config and state in ("success", "failed"):
            return state
        if time.monotonic() > deadline:
            return f"{state} after {timeout:g} s (timed out)"
        await asyncio.sleep(POLL_S)
