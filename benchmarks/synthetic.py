"""A synthetic production-sized cluster: N nodes x 8 H100s, mixed MIG layouts, ~10 GPU pods a node.

Nodes come from the emulator's own GFD labelling (``demo.emulator.nodelabels``), so they
are the Node objects the API returns; pods are plain API dicts, some created by
mig-spawner (team/user/charge labels), some by other workloads. Seeded: the same
arguments give the same cluster.
"""

from __future__ import annotations

import random

from mig_spawner.core.pods import SERVER_NAME_ANNOTATION, hub_marks
from mig_spawner.core.policy import build_policy
from mig_spawner.demo.emulator.clusterfile import load_cluster_spec
from mig_spawner.demo.emulator.nodelabels import node_object

H100 = "NVIDIA-H100-80GB-HBM3"
#: mig-parted-style per-GPU layouts of an H100 80GB
LAYOUTS = [
    ["1g.10gb"] * 7,
    ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"],
    ["2g.20gb", "2g.20gb", "2g.20gb"],
    ["3g.40gb", "3g.40gb"],
    ["4g.40gb", "3g.40gb"],
    ["7g.80gb"],
]
TEAMS = [f"team{i}" for i in range(8)]
TIERS = {
    "notebook": {
        "display_name": "1g notebook",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "max_compute_slices": 3,
        "max_fallback_steps": 2,
        "default": True,
    },
    "medium": {"display_name": "2g", "compute_slices": 2, "min_memory_gb": 20},
    "training": {"display_name": "3g training", "compute_slices": 3, "min_memory_gb": 40},
    "full": {"display_name": "7g full GPU", "compute_slices": 7},
    "pool": {
        "display_name": "dedicated pool",
        "compute_slices": 1,
        "node_selector": {"example.com/pool": "dedicated"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    },
}


def policy(quota_slices: int = 100_000):
    return build_policy(
        tiers=TIERS,
        team_quotas={t: {"compute_slices": quota_slices} for t in TEAMS},
        default_quota={"compute_slices": 7},
    )


def nodes(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    raw = []
    for i in range(n):
        spec = {
            "name": f"gpu-{i:05d}",
            "gpu": H100,
            "gpus": 8,
            "strategy": "mixed",
            "mig": [rng.choice(LAYOUTS) for _ in range(8)],
        }
        if i % 10 == 0:  # a tenth of the nodes: a dedicated, tainted pool
            spec["labels"] = {"example.com/pool": "dedicated"}
            spec["taints"] = [{"key": "dedicated", "value": "yes", "effect": "NoSchedule"}]
        raw.append(spec)
    spec = load_cluster_spec({"nodes": raw})
    return [node_object(s) for s in spec.nodes]


def pod(
    name,
    namespace,
    node_name,
    resource,
    *,
    user=None,
    team=None,
    phase="Running",
    tier="",
    requested_profile="",
    server_name="",
    created="",
):
    """A GPU pod; with ``user``, one this hub created, marked exactly as the spawner does
    (so it counts toward its team's quota, its charge derived from what it requests).
    ``tier``, ``requested_profile`` (default: the granted one), ``server_name`` and
    ``created`` (RFC 3339) as the spawner and the API write them."""
    labels, annotations = {}, {}
    if server_name:
        annotations[SERVER_NAME_ANNOTATION] = server_name
    if user is not None:
        profile = resource.removeprefix("nvidia.com/mig-")
        labels, marks = hub_marks(
            hub="jupyterhub",
            user=user,
            team=team or "",
            tier=tier,
            requested_profile=requested_profile or profile,
            granted_profile=profile,
            granted_product=H100,
            charge_mode="granted",
            node=node_name,
        )
        annotations.update(marks)
        labels["component"] = "singleuser-server"
    metadata = {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": annotations,
        "uid": f"uid-{name}",
    }
    if created:
        metadata["creationTimestamp"] = created
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "nodeName": node_name,
            "containers": [{"name": "main", "resources": {"limits": {resource: "1"}}}],
        },
        "status": {"phase": phase},
    }


#: Servers a user holds on average. Zero to JupyterHub's default is one (named servers
#: off); hubs that allow named servers usually cap them at a few per user.
SERVERS_PER_USER = 2


def n_users(node_objs: list[dict], per_node: int = 10) -> int:
    """Users of the hub: as many as give each ~``SERVERS_PER_USER`` of its pods."""
    return max(1, round(0.7 * per_node * len(node_objs) / SERVERS_PER_USER))


def pods(
    node_objs: list[dict], per_node: int = 10, seed: int = 2, users: int | None = None
) -> list[dict]:
    """~``per_node`` GPU pods on each node, never more than it offers; 70 % the hub's,
    spread over ``users`` users (default :func:`n_users`: the users grow with the cluster,
    as on a real hub, rather than each of a fixed set holding ever more servers)."""
    rng = random.Random(seed)
    users = users or n_users(node_objs, per_node)
    out = []
    for obj in node_objs:
        name = obj["metadata"]["name"]
        slots = [
            r
            for r, n in obj["status"]["allocatable"].items()
            if r.startswith("nvidia.com/mig-")
            for _ in range(int(n))
        ]
        rng.shuffle(slots)
        for j, resource in enumerate(slots[:per_node]):
            if rng.random() < 0.7:
                team = rng.choice(TEAMS)
                user = f"user{rng.randrange(users)}"
                out.append(
                    pod(
                        f"jupyter-{name}-{j}",
                        "jhub",
                        name,
                        resource,
                        user=user,
                        team=team,
                    )
                )
            else:
                out.append(pod(f"job-{name}-{j}", "batch", name, resource))
    return out
