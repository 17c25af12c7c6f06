"""Who holds which slice of which GPU: the data behind the admin page, metrics and ``status``.

Pure: (ClusterState, Policy) in, frozen rows out. Everything is read from the state's
public queries (``nodes``, ``pods``, ``reservations``, ``free``, ``usage``) -- the same
figures decisions use -- so the picture and the decisions cannot disagree.

Kubernetes does not say which physical GPU or which placement a MIG device sits on: a node
advertises only counts per profile. :func:`gpu_layout` therefore *draws* the node's slices
onto its GPUs with the catalog's placements (the fewest GPUs that hold them, each slice at a
placement NVIDIA allows), and :func:`node_map` lays the holders onto those cells in a stable
order. The drawing is a valid MIG layout with the node's exact counts; which holder sits on
which instance of a profile is illustrative. Counts of free, held and reserved are exact.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from .catalog import Catalog
from .cluster import ClusterState
from .nodes import NodeInfo, SliceType
from .policy import QUOTA_KEYS, Policy

#: GFD's label for the number of GPUs a node has (physical GPUs under the mixed strategy).
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
#: Cell states, as the page colours them.
FREE, USED, RESERVED, UNUSABLE, OTHER = "free", "used", "reserved", "unusable", "other"
_SEARCH_BUDGET = 20_000  # placement attempts per node before packing one GPU at a time
_DEFAULT_WIDTH = 8  # memory slices of a GPU the catalog does not know


@dataclass(frozen=True)
class Holder:
    """What holds one slice: a mig-spawner server, a reservation, or another workload."""

    key: str  # "namespace/pod"
    user: str = ""  # "" for a pod mig-spawner did not create
    team: str = ""
    server: str = ""
    tier: str = ""
    profile: str = ""
    requested: str = ""  # the profile the tier asked for, when known
    reserved: bool = False  # admitted, pod not bound yet

    @property
    def managed(self) -> bool:
        return bool(self.user)

    @property
    def fallback(self) -> bool:
        return bool(self.requested) and self.requested != self.profile


@dataclass(frozen=True)
class Cell:
    """One MIG instance (or a whole GPU) drawn at ``start`` over ``size`` memory slices."""

    profile: str
    compute_slices: int
    start: int
    size: int
    state: str
    holder: Holder | None = None


@dataclass(frozen=True)
class GPUMap:
    index: int
    width: int  # memory slices of this GPU model
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class NodeMap:
    name: str
    gpu_name: str
    usable: bool
    why_unusable: str | None
    gpus: tuple[GPUMap, ...]
    #: slices held beyond what the node offers, layouts that could not be drawn, ...
    problems: tuple[str, ...] = ()

    def count(self, state: str) -> int:
        return sum(1 for g in self.gpus for c in g.cells if c.state == state)


@dataclass(frozen=True)
class CapacityRow:
    """One slice type on one node: what the metrics and the summary tables count."""

    node: str
    slice_type: SliceType
    total: int
    free: int

    @property
    def held(self) -> int:
        return self.total - self.free


@dataclass(frozen=True)
class TeamRow:
    """A quota scope's usage against each configured limit (``limits[unit] = (used, limit)``)."""

    team: str
    limits: tuple[tuple[str, float, float | None], ...]
    servers: int

    def used(self, unit: str) -> float:
        return next((u for name, u, _ in self.limits if name == unit), 0)


# --------------------------------------------------------------------------- capacity


def capacity(state: ClusterState) -> list[CapacityRow]:
    """Total and free slices per (node, slice type), free as decisions count it."""
    rows = []
    for name in sorted(state.nodes):
        node = state.nodes[name]
        for kind in sorted(node.offers, key=lambda k: k.sort_key):
            rows.append(CapacityRow(name, kind, node.offers[kind], state.free(node, kind)))
    return rows


@dataclass(frozen=True)
class TypeRow:
    """One slice type summed over every node: the cluster-wide table."""

    gpu: str
    profile: str
    total: int
    free: int
    nodes: int

    @property
    def held(self) -> int:
        return self.total - self.free


def by_type(rows: Iterable[CapacityRow]) -> list[TypeRow]:
    """:func:`capacity` rows summed per (GPU model, profile): by model, smallest slice first."""
    sums: dict[SliceType, list[int]] = {}
    for row in rows:
        acc = sums.setdefault(row.slice_type, [0, 0, 0])
        acc[0] += row.total
        acc[1] += row.free
        acc[2] += 1
    return [
        TypeRow(kind.gpu_name, kind.profile, total, free, nodes)
        for kind, (total, free, nodes) in sorted(
            sums.items(), key=lambda kv: (kv[0].gpu_name, kv[0].sort_key)
        )
    ]


def team_rows(policy: Policy, state: ClusterState) -> list[TeamRow]:
    """Every team of ``team_quotas``, in the admin's order, with usage against its limits.

    Per-user limits (``per_user_compute_slices``) are not a team figure and are left out.
    """
    rows = []
    for team, quota in policy.team_quotas.items():
        usage = state.usage(team, "")
        used = {
            "compute_slices": usage.compute_slices,
            "memory_gb": usage.memory_gb,
            "servers": usage.servers,
        }
        limits = tuple(
            (unit, used[unit], getattr(quota, unit)) for unit in QUOTA_KEYS if unit in used
        )
        rows.append(TeamRow(team, limits, usage.servers))
    return rows


# --------------------------------------------------------------------------- layout


@functools.lru_cache(maxsize=1024)
def _geometry(kind: SliceType, catalog: Catalog) -> tuple[int, int, tuple[int, ...]]:
    """(GPU width, slice size, allowed starts) in memory slices, from the catalog."""
    model = catalog.model_for_product(kind.product)
    width = model.memory_slices if model else _DEFAULT_WIDTH
    if kind.is_whole_gpu:
        return width, width, (0,)
    profile = model.profile(kind.profile) if model else None
    if profile is not None and profile.memory_slices and profile.placements:
        return width, profile.memory_slices, tuple(start for start, _ in profile.placements)
    size = (profile.memory_slices if profile else None) or min(kind.compute_slices, width)
    return width, size, tuple(range(0, width - size + 1))


@functools.lru_cache(maxsize=4096)
def gpu_layout(
    items: tuple[tuple[str, int, int, tuple[int, ...]], ...], gpus: int | None
) -> tuple[tuple[int, str, int, int], ...] | None:
    """Place slices ``(profile, width, size, starts)`` onto the fewest GPUs (at most ``gpus``).

    Returns ``(gpu index, profile, start, size)`` per slice, largest slices first, or None
    when they cannot be placed within the limit. Exact search with a budget; identical
    slices are placed in order so permutations are not retried.
    """
    order = sorted(items, key=lambda it: (-it[2], it[0]))
    placed: list[tuple[int, str, int, int]] = []
    masks: list[int] = []
    budget = [_SEARCH_BUDGET]

    def fits(i: int, min_gpu: int) -> bool:
        if i == len(order):
            return True
        budget[0] -= 1
        if budget[0] < 0:
            return False
        profile, width, size, starts = order[i]
        same_as_prev = i > 0 and order[i - 1] == order[i]
        lo = min_gpu if same_as_prev else 0
        for g in range(lo, len(masks) + 1):
            if g == len(masks):
                if gpus is not None and g >= gpus:
                    break
                masks.append(0)
            for start in starts:
                bits = ((1 << size) - 1) << start
                if masks[g] & bits or start + size > width:
                    continue
                masks[g] |= bits
                placed.append((g, profile, start, size))
                if fits(i + 1, g):
                    return True
                placed.pop()
                masks[g] &= ~bits
            if masks[g] == 0:
                masks.pop()  # a fresh GPU that held nothing: any other fresh one is the same
                break
        return False

    if fits(0, 0):
        return tuple(placed)
    return None


def _draw(
    node: NodeInfo, catalog: Catalog
) -> tuple[list[tuple[int, SliceType, int, int]], int, list[str]]:
    """The node's slices drawn on GPUs: (gpu, kind, start, size), the GPU count, problems."""
    items, kinds = [], {}
    widths = set()
    for kind in sorted(node.offers, key=lambda k: k.sort_key):
        width, size, starts = _geometry(kind, catalog)
        widths.add(width)
        kinds[kind.profile] = kind
        items += [(kind.profile, width, size, starts)] * node.offers[kind]
    label = node.labels.get(GPU_COUNT_LABEL, "")
    mixed = any(k.strategy == "mixed" for k in node.offers)
    limit = int(label) if mixed and label.isdecimal() and int(label) > 0 else None
    problems = []
    layout = gpu_layout(tuple(items), limit) if items else ()
    if layout is None and limit is not None:
        problems.append(f"its slices do not fit {limit} GPU(s) ({GPU_COUNT_LABEL}); drawn on more")
        layout = gpu_layout(tuple(items), None)
    if layout is None:  # search budget spent: one GPU per slice, never wrong about counts
        problems.append("layout too large to draw exactly; one slice per GPU")
        layout = tuple((i, p, 0, size) for i, (p, _, size, _) in enumerate(items))
    drawn = [(g, kinds[p], start, size) for g, p, start, size in layout]
    used_gpus = 1 + max((g for g, *_ in drawn), default=-1)
    return drawn, max(used_gpus, limit or 0), problems


def holders(state: ClusterState) -> dict[str, list[tuple[str, Holder]]]:
    """Per node, (resource, Holder) of every slice held there: pods first, then reservations.

    A reservation still listed holds its own slice (the state counts it as held): either
    its pod is not bound yet, or the name's previous pod is still on the node.
    """
    by_node: dict[str, list[tuple[str, Holder]]] = defaultdict(list)
    for key in sorted(state.pods):
        pod = state.pods[key]
        if not (pod.active and pod.node):
            continue
        holder = Holder(
            key=key,
            user=pod.user or "",
            team=pod.team,
            server=pod.server_name,
            tier=pod.tier,
            profile=pod.profile,
            requested=pod.requested_profile,
        )
        for resource, n in sorted(pod.requests.items()):
            by_node[pod.node] += [(resource, holder)] * n
    for key in sorted(state.reservations):
        res = state.reservations[key]
        holder = Holder(
            key=key,
            user=res.user,
            team=res.team,
            server=res.server_name,
            tier=res.tier,
            profile=res.slice_type.profile,
            requested=res.requested_profile,
            reserved=True,
        )
        by_node[res.node].append((res.slice_type.resource, holder))
    return by_node


def node_maps(state: ClusterState, names: Iterable[str] | None = None) -> list[NodeMap]:
    """The slice map of the named nodes (default: every node with a GPU), by name."""
    by_node = holders(state)
    wanted = sorted(state.nodes) if names is None else sorted(n for n in names if n in state.nodes)
    out = []
    for name in wanted:
        node = state.nodes[name]
        if node.offers or by_node.get(name):
            out.append(node_map(node, by_node.get(name, []), state.catalog))
    return out


def node_map(node: NodeInfo, holders: list[tuple[str, Holder]], catalog: Catalog) -> NodeMap:
    """One node: its GPUs' cells, each free, used (a pod), reserved, or unusable."""
    drawn, n_gpus, problems = _draw(node, catalog)
    queues: dict[str, list[Holder]] = defaultdict(list)
    for resource, holder in holders:
        queues[resource].append(holder)
    cells: dict[int, list[Cell]] = defaultdict(list)
    widths: dict[int, int] = {}
    for gpu, kind, start, size in sorted(drawn, key=lambda d: (d[0], d[2])):
        width, _, _ = _geometry(kind, catalog)
        widths[gpu] = width
        queue = queues.get(kind.resource)
        holder = queue.pop(0) if queue else None
        if holder is None:
            state = FREE if node.usable else UNUSABLE
        elif holder.reserved:
            state = RESERVED
        else:
            state = USED if holder.managed else OTHER
        cells[gpu].append(Cell(kind.profile, kind.compute_slices, start, size, state, holder))
    for resource, left in sorted(queues.items()):
        if left:
            problems.append(f"{len(left)} more {resource} held than the node offers")
    default_width = next(iter(widths.values()), _DEFAULT_WIDTH)
    gpus = tuple(
        GPUMap(i, widths.get(i, default_width), tuple(cells.get(i, ()))) for i in range(n_gpus)
    )
    gpu_name = next((k.gpu_name for k in node.offers), "no GPU")
    return NodeMap(
        node.name,
        gpu_name,
        node.usable,
        node.why_unusable(),
        gpus,
        tuple(problems + list(node.problems)),
    )


def fallback_servers(state: ClusterState) -> list[tuple[str, Holder]]:
    """(node, holder) of every server on a larger slice than its tier asked for, by node."""
    seen = set()
    out = []
    for node, held in sorted(holders(state).items()):
        for _, holder in held:
            if holder.fallback and holder.key not in seen:
                seen.add(holder.key)
                out.append((node, holder))
    return out
