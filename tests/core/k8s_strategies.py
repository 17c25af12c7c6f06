"""Hypothesis strategies and helpers for the core's property tests (imported as ``k8s_strategies``).

Clusters are built with ``k8s_factories`` (Node/Pod dicts as the API returns them) from
H100 MIG layouts that mig-parted can actually create, under the mixed and the single
strategy, with whole GPUs, cordoned and NotReady nodes and other namespaces' pods.
Used by test_admission_properties.py, test_cluster_properties.py and test_index.py.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import strategies as st
from k8s_factories import node, pod

from mig_spawner.core.admission import SpawnRequest
from mig_spawner.core.catalog import WHOLE_GPU, default_catalog
from mig_spawner.core.cluster import ADDED, ClusterState
from mig_spawner.core.nodes import SliceType, parse_node
from mig_spawner.core.pods import TERMINAL_PHASES

CATALOG = default_catalog()


# ----------------------------------------------------------------------------- clusters

#: Per-GPU H100 80GB layouts (mig-parted style). Single strategy needs one profile per node.
H100_LAYOUTS = {
    "all-1g.10gb": ["1g.10gb"] * 7,
    "all-1g.20gb": ["1g.20gb"] * 4,
    "all-2g.20gb": ["2g.20gb"] * 3,
    "all-3g.40gb": ["3g.40gb"] * 2,
    "all-7g.80gb": ["7g.80gb"],
    "3g+2x2g": ["3g.40gb", "2g.20gb", "2g.20gb"],
    "4g+3g": ["4g.40gb", "3g.40gb"],
    "2x1g+2g+3g": ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"],
    "disabled": [],  # MIG off: a whole GPU
}


SINGLE_LAYOUTS = [k for k, v in H100_LAYOUTS.items() if len(set(v)) <= 1]


PROFILES = ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]


CORDON_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}


#: JupyterHub users and their groups; "Data Science" and erin's name are not label values.
USERS = {
    "alice": ("vision", "nlp"),
    "bob": ("vision",),
    "carol": ("nlp", "Data Science"),
    "dave": ("Data Science",),
    "erin@example.com": (),
    "frank": ("interns",),
}


TEAMS = ("vision", "nlp", "Data Science")


TIERS = {
    "small": {
        "compute_slices": 1,
        "min_memory_gb": 10,
        "max_compute_slices": 3,
        "max_fallback_steps": 2,
    },
    "mid": {"compute_slices": 2, "min_memory_gb": 20},
    "big": {"compute_slices": 3, "min_memory_gb": 40, "max_fallback_steps": 1},
    "whole": {"compute_slices": 7, "fallback": False, "groups": ["vision", "nlp"]},
    "strict": {"compute_slices": 1, "fallback": False},
}


@st.composite
def gpu_node(draw, name: str) -> dict:
    """One H100 node: 1-2 GPUs, random layouts, mixed or single, maybe cordoned/NotReady."""
    strategy = draw(st.sampled_from(["mixed", "single"]))
    gpus = draw(st.integers(1, 2))
    if strategy == "mixed":
        layouts = [draw(st.sampled_from(sorted(H100_LAYOUTS))) for _ in range(gpus)]
    else:
        layouts = [draw(st.sampled_from(SINGLE_LAYOUTS))] * gpus
    mig = [p for layout in layouts for p in H100_LAYOUTS[layout]]
    whole = sum(layout == "disabled" for layout in layouts)
    ready = draw(st.sampled_from([True, True, True, False]))
    cordoned = draw(st.sampled_from([False, False, False, True]))
    taints = []
    if cordoned and draw(st.booleans()):  # the node controller's taint (usually there)
        taints.append(CORDON_TAINT)
    if not ready and draw(st.booleans()):
        taints.append(NOT_READY_TAINT)
    if strategy == "single" and mig and whole:
        whole = 0  # single strategy cannot mix MIG and whole GPUs on one node
    obj = node(
        name,
        mig=mig,
        strategy=strategy,
        whole_gpus=whole,
        ready=ready,
        unschedulable=cordoned,
        taints=taints or None,
    )
    # GFD of another version: per-profile SM/memory labels missing or with other figures
    labels = obj["metadata"]["labels"]
    for key in sorted(k for k in labels if k.endswith((".multiprocessors", ".memory"))):
        drift = draw(st.sampled_from(["same", "same", "same", "missing", "other"]))
        if drift == "missing":
            del labels[key]
        elif drift == "other":
            labels[key] = str(int(labels[key]) - 2)
    return obj


def allocatable(obj: dict) -> dict[str, int]:
    alloc = obj["status"]["allocatable"]
    return {r: int(n) for r, n in alloc.items() if r.startswith("nvidia.com/") and int(n)}


def kind_of(obj: dict, resource: str) -> SliceType:
    return parse_node(obj, CATALOG).resources[resource]


def hub_pod(
    name, *, node_name, resource, kind, user, team, phase=None, server="", uid=None, **marks
):
    """A pod mig-spawner created (labels as the spawner writes them)."""
    obj = pod(
        name,
        namespace="jhub",
        node=node_name,
        resources={resource: 1},
        phase=phase,
        user=user,
        team=team or "",
        granted_profile=kind.profile,
        product=kind.product,
        server_name=server,
        **marks,
    )
    if uid is not None:
        obj["metadata"]["uid"] = uid
    return obj


@st.composite
def clusters(draw, max_nodes: int = 6):
    """(nodes, pods): pods fit what the scheduler would allow on each node.

    Some profiles are taken entirely on every node (so that tiers fall back), the others
    partly.
    """
    nodes = [draw(gpu_node(f"gpu-{i}")) for i in range(draw(st.integers(1, max_nodes)))]
    full = draw(st.sets(st.sampled_from([*PROFILES, WHOLE_GPU])))
    pods = []
    for obj in nodes:
        name = obj["metadata"]["name"]
        for resource, cap in sorted(allocatable(obj).items()):
            tag = resource.rsplit("/", 1)[-1].replace(".", "")
            profile = kind_of(obj, resource).profile
            taken = cap if profile in full else draw(st.integers(0, cap))
            for j in range(taken):
                if draw(st.booleans()):  # another namespace's workload
                    pods.append(
                        pod(
                            f"job-{name}-{tag}-{j}",
                            namespace=draw(st.sampled_from(["ml-batch", "research"])),
                            node=name,
                            resources={resource: 1},
                        )
                    )
                else:  # a hub server from before a restart
                    user = draw(st.sampled_from(sorted(USERS)))
                    team = draw(st.sampled_from([None, *USERS[user]]))
                    kind = kind_of(obj, resource)
                    pods.append(
                        hub_pod(
                            f"jupyter-{name}-{tag}-{j}",
                            node_name=name,
                            resource=resource,
                            kind=kind,
                            user=user,
                            team=team,
                        )
                    )
            # finished and unscheduled pods hold nothing
            if draw(st.booleans()):
                pods.append(
                    pod(
                        f"done-{name}-{tag}",
                        namespace="ml-batch",
                        node=name,
                        resources={resource: 2},
                        phase=draw(st.sampled_from(TERMINAL_PHASES)),
                    )
                )
            if draw(st.booleans()):
                pods.append(
                    pod(f"wait-{name}-{tag}", namespace="research", resources={resource: 1})
                )
    return nodes, pods


def build_state(nodes, pods) -> ClusterState:
    state = ClusterState()
    for obj in nodes:
        state.apply_node_event(ADDED, obj)
    for obj in pods:
        state.apply_pod_event(ADDED, obj)
    return state


def bound_counts(pods) -> Counter:
    """(node, resource) -> slices held by active pods bound there, from the pod dicts."""
    held: Counter = Counter()
    for obj in pods:
        if obj["spec"].get("nodeName") and obj["status"]["phase"] not in TERMINAL_PHASES:
            for container in obj["spec"]["containers"]:
                for r, n in container["resources"]["limits"].items():
                    held[(obj["spec"]["nodeName"], r)] += int(n)
    return held


def reserved_counts(state: ClusterState) -> Counter:
    return Counter((r.node, r.slice_type.resource) for r in state.reservations.values())


quota_limits = st.fixed_dictionaries(
    {},
    optional={
        "compute_slices": st.integers(0, 10),
        "memory_gb": st.sampled_from([0, 10, 25, 60, 100]),
        "servers": st.integers(0, 4),
        "per_user_compute_slices": st.integers(1, 7),
    },
)


quota_sets = st.fixed_dictionaries({team: quota_limits for team in TEAMS})


spawn_requests = st.tuples(
    st.sampled_from(sorted(USERS)),
    st.sampled_from(sorted(TIERS)),
    st.integers(0, 2),  # 0: let the core pick the team, else the user's n-th group
    st.integers(0, 5),  # which of a few pod keys (respawns reuse a key)
)


def request_of(user: str, tier: str, pick: int, server: str = "") -> SpawnRequest:
    groups = USERS[user]
    team = groups[pick - 1] if 0 < pick <= len(groups) else None
    return SpawnRequest(user=user, tier=tier, groups=groups, team=team, server_name=server)


# ----------------------------------------------------------------------------- 5. incremental

NODE_NAMES = ["gpu-0", "gpu-1", "gpu-2"]


POD_NAMES = [("jhub", "jupyter-a"), ("jhub", "jupyter-b"), ("ml", "job-0"), ("ml", "job-1")]


RESOURCES = ["nvidia.com/mig-1g.10gb", "nvidia.com/mig-3g.40gb", "nvidia.com/gpu"]
