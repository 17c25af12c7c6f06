"""Cluster files: the YAML that says which nodes, GPUs and MIG layouts an emulated cluster has.

Format::

    namespaces: [jhub]                  # optional; default, kube-system, kube-public and
                                        # kube-node-lease always exist
    nodes:
      - name: gpu-h100-a                # required; a DNS subdomain
        count: 1                        # optional: N copies named <name>-1 ... <name>-N
        gpu: NVIDIA-H100-80GB-HBM3      # GFD product label or catalog key (h100-80gb);
                                        # omit for a CPU-only node
        gpus: 1                         # physical GPUs (default 1 with a gpu, else 0)
        strategy: mixed                 # mixed | single | none (device plugin MIG strategy)
        mig: [[1g.10gb, 1g.10gb, 1g.10gb, 1g.10gb, 1g.10gb, 1g.10gb, 1g.10gb]]
        # mig is one of:
        #   omitted or []               MIG disabled on every GPU (whole GPUs)
        #   [[profiles...], [...]]      per GPU; an empty list disables MIG on that GPU
        #   [profiles...]               the same layout on every GPU
        #   all-disabled | all-enabled | all-balanced | all-<profile>   mig-parted config
        #                               names, applied to every GPU as mig-parted would
        mig_config: custom-a            # optional nvidia.com/mig.config label value (default:
                                        # the config name, or the matching named config, or
                                        # "custom")
        labels: {team: vision}          # extra labels
        annotations: {}
        taints: [{key: dedicated, value: training, effect: NoSchedule}]
        unschedulable: false            # cordoned
        ready: true                     # Ready condition
        cpu: "64"                       # allocatable = capacity; these are the defaults
        memory: 512Gi
        pods: 110
        ephemeral_storage: 500Gi

Profiles may be written in NVIDIA form (``1g.10gb+me``) or Kubernetes form (``1g.10gb.me``).
Every GPU's layout is checked against the catalog: each profile must exist on that GPU, no
profile may exceed its instance limit, and the instances must have non-overlapping placements
(memory slices) and fit in the GPU's compute slices. Errors raise :class:`ClusterSpecError`
naming the node and field, and the path to it (``("nodes", 2, "gpu")``):
:func:`load_cluster_file` turns that into ``file:line:column``.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mig_spawner.cli.locate import locate_in_yaml, yaml_syntax_error
from mig_spawner.core.catalog import GPUModel, Profile, default_catalog, parse_profile_name
from mig_spawner.core.errors import InputError

STRATEGIES = ("mixed", "single", "none")
_NODE_FIELDS = {
    "name",
    "count",
    "gpu",
    "gpus",
    "strategy",
    "mig",
    "mig_config",
    "labels",
    "annotations",
    "taints",
    "unschedulable",
    "ready",
    "cpu",
    "memory",
    "pods",
    "ephemeral_storage",
}
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class ClusterSpecError(InputError):
    """A cluster file or spec that cannot describe a cluster; the message says where, the
    ``path`` (relative to the file's root) says which key."""


@dataclass
class NodeSpec:
    """One node. ``layouts`` has one entry per GPU: ``None`` when MIG is disabled on it, else
    the profiles of its MIG devices (an empty list: MIG enabled, no devices)."""

    name: str
    model: GPUModel | None = None
    product: str | None = None
    gpus: int = 0
    strategy: str = "mixed"
    layouts: list[list[Profile] | None] = field(default_factory=list)
    mig_config: str = "all-disabled"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)
    unschedulable: bool = False
    ready: bool = True
    cpu: str = "64"
    memory: str = "512Gi"
    pods: str = "110"
    ephemeral_storage: str = "500Gi"


@dataclass
class ClusterSpec:
    nodes: list[NodeSpec] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)


def fit_layout(model: GPUModel, profiles: list[Profile]) -> bool:
    """Whether these GPU instances can coexist on one GPU of ``model``."""
    counts = Counter(p.name for p in profiles)
    for profile in {p.name: p for p in profiles}.values():
        if profile.max_instances is not None and counts[profile.name] > profile.max_instances:
            return False
    if sum(p.compute_slices for p in profiles) > model.compute_slices:
        return False
    if any(not p.placements for p in profiles):  # placements unknown: count slices only
        return sum(p.memory_slices or 1 for p in profiles) <= model.memory_slices
    ordered = sorted(profiles, key=lambda p: (-max(size for _, size in p.placements), p.name))

    def place(index: int, used: frozenset[int]) -> bool:
        if index == len(ordered):
            return True
        for start, size in ordered[index].placements:
            slots = frozenset(range(start, start + size))
            if not slots & used and place(index + 1, used | slots):
                return True
        return False

    return place(0, frozenset())


def _plain(model: GPUModel, compute: int) -> Profile | None:
    for profile in model.profiles:  # smallest first
        if profile.compute_slices == compute and parse_profile_name(profile.name).suffix == "":
            return profile
    return None


def named_config(model: GPUModel, name: str) -> list[Profile] | str | None:
    """The per-GPU layout of a mig-parted config name; ``None`` for all-disabled; an error
    message (str) for a name that does not apply to this model."""
    if name == "all-disabled":
        return None
    if name == "all-enabled":
        return []
    if name == "all-balanced":
        small, two, three = _plain(model, 1), _plain(model, 2), _plain(model, 3)
        layout = [small, small, two] + ([three] if model.compute_slices >= 7 else [])
        if any(p is None for p in layout):
            return f"{model.display_name} has no balanced layout"
        return layout  # type: ignore[return-value]
    if name.startswith("all-"):
        profile = model.profile(name[4:])
        if profile is None:
            return _unknown_profile(model, name[4:])
        count = profile.max_instances or model.compute_slices // profile.compute_slices
        while count > 0 and not fit_layout(model, [profile] * count):
            count -= 1
        return [profile] * count
    return (
        f"unknown mig-parted config {name!r} "
        "(use all-disabled, all-enabled, all-balanced or all-<profile>)"
    )


def _unknown_profile(model: GPUModel, name: str) -> str:
    known = ", ".join(p.name for p in model.profiles)
    return f"unknown MIG profile {name!r} for {model.products[0]}; known: {known}"


def _describe(layout: list[Profile] | None) -> str:
    return "disabled" if layout is None else "[" + ", ".join(p.name for p in layout) + "]"


def _layouts(raw: Any, model: GPUModel, gpus: int, where: str) -> tuple[list, str | None]:
    if raw is None or raw == []:
        return [None] * gpus, "all-disabled"
    if isinstance(raw, str):
        layout = named_config(model, raw)
        if isinstance(layout, str):
            raise ClusterSpecError(f"{where}.mig: {layout}", path=("mig",))
        return [copy.copy(layout) for _ in range(gpus)], raw
    if not isinstance(raw, list):
        raise ClusterSpecError(
            f"{where}.mig: expected a config name or a list, got {raw!r}",
            path=("mig",),
            expected="a mig-parted config name or a list of MIG profiles",
        )
    nested = all(isinstance(x, list) or x is None for x in raw)
    per_gpu = raw if nested else [raw] * gpus
    if len(per_gpu) != gpus:
        raise ClusterSpecError(
            f"{where}.mig: {len(per_gpu)} GPU layouts for gpus: {gpus}", path=("mig",)
        )
    layouts: list[list[Profile] | None] = []
    for g, names in enumerate(per_gpu):
        if not names:
            layouts.append(None)
            continue
        profiles = []
        for i, name in enumerate(names):
            profile = model.profile(str(name)) if isinstance(name, str) else None
            if profile is None:
                raise ClusterSpecError(
                    f"{where}.mig[{g}][{i}]: {_unknown_profile(model, str(name))}",
                    path=("mig", g, i) if nested else ("mig", i),
                    expected=f"a MIG profile of {model.products[0]}",
                )
            profiles.append(profile)
        if not fit_layout(model, profiles):
            raise ClusterSpecError(
                f"{where}: GPU {g} layout {_describe(profiles)} does not fit on one "
                f"{model.products[0]} ({model.memory_slices} memory slices, "
                f"{model.compute_slices} compute slices; check instance limits and placements)",
                path=("mig", g) if nested else ("mig",),
            )
        layouts.append(profiles)
    return layouts, None


def _config_name(model: GPUModel, layouts: list) -> str:
    def key(layout):
        return None if layout is None else sorted(p.name for p in layout)

    candidates = ["all-disabled", "all-balanced"] + [f"all-{p.k8s_name}" for p in model.profiles]
    for name in candidates:
        layout = named_config(model, name)
        if not isinstance(layout, str) and all(key(x) == key(layout) for x in layouts):
            return name
    return "custom"


def _string_map(raw: Any, where: str, field: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ClusterSpecError(f"{where}: expected a mapping, got {raw!r}", path=(field,))
    result = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ClusterSpecError(
                f"{where}.{key}: expected a string value, got {value!r}", path=(field, key)
            )
        result[str(key)] = str(value)
    return result


def _taints(raw: Any, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ClusterSpecError(f"{where}: expected a list of taints", path=("taints",))
    taints = []
    for i, taint in enumerate(raw):
        if not isinstance(taint, dict) or not taint.get("key"):
            raise ClusterSpecError(f"{where}[{i}]: a taint needs a key", path=("taints", i))
        if taint.get("effect") not in _EFFECTS:
            raise ClusterSpecError(
                f"{where}[{i}].effect: must be one of {', '.join(_EFFECTS)}",
                path=("taints", i, "effect"),
            )
        taints.append({k: str(v) for k, v in taint.items() if k in ("key", "value", "effect")})
    return taints


def _model(raw: Any, where: str) -> GPUModel:
    catalog = default_catalog()
    model = catalog.model_for_product(str(raw))
    if model is None:
        try:
            model = catalog.model(str(raw))
        except KeyError:
            keys = ", ".join(m.key for m in catalog)
            raise ClusterSpecError(
                f"{where}.gpu: unknown GPU {raw!r}; "
                f"use a GFD product label or a catalog key ({keys})",
                path=("gpu",),
                expected="a GFD product label or a catalog key",
            ) from None
    return model


def _node(raw: Any, where: str) -> list[NodeSpec]:
    if not isinstance(raw, dict):
        raise ClusterSpecError(f"{where}: expected a mapping, got {raw!r}")
    name = raw.get("name")
    if not name or not isinstance(name, str):
        raise ClusterSpecError(f"{where}: missing required field 'name'")
    where = f"node {name!r}"
    unknown = set(raw) - _NODE_FIELDS
    if unknown:
        raise ClusterSpecError(
            f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}",
            path=(sorted(map(str, unknown))[0],),
            expected=f"one of {', '.join(sorted(_NODE_FIELDS))}",
        )
    spec = NodeSpec(name=name)
    strategy = raw.get("strategy", "mixed")
    if strategy not in STRATEGIES:
        raise ClusterSpecError(
            f"{where}.strategy: must be one of {', '.join(STRATEGIES)}, got {strategy!r}",
            path=("strategy",),
        )
    spec.strategy = strategy
    if raw.get("gpu") is not None:
        spec.model = _model(raw["gpu"], where)
        given = str(raw["gpu"])
        spec.product = given if given in spec.model.products else spec.model.products[0]
        spec.gpus = raw.get("gpus", 1)
        if not isinstance(spec.gpus, int) or isinstance(spec.gpus, bool) or spec.gpus < 1:
            raise ClusterSpecError(
                f"{where}.gpus: must be a positive integer, got {raw.get('gpus')!r}",
                path=("gpus",),
            )
        spec.layouts, config = _layouts(raw.get("mig"), spec.model, spec.gpus, where)
        spec.mig_config = str(
            raw.get("mig_config") or config or _config_name(spec.model, spec.layouts)
        )
    elif raw.get("mig") or raw.get("gpus"):
        raise ClusterSpecError(f"{where}: 'mig' and 'gpus' need a 'gpu' model")
    spec.labels = _string_map(raw.get("labels"), f"{where}.labels", "labels")
    spec.annotations = _string_map(raw.get("annotations"), f"{where}.annotations", "annotations")
    spec.taints = _taints(raw.get("taints"), f"{where}.taints")
    for flag in ("unschedulable", "ready"):
        if flag in raw and not isinstance(raw[flag], bool):
            raise ClusterSpecError(f"{where}.{flag}: must be true or false", path=(flag,))
    spec.unschedulable = raw.get("unschedulable", False)
    spec.ready = raw.get("ready", True)
    for key in ("cpu", "memory", "pods", "ephemeral_storage"):
        if key in raw:
            setattr(spec, key, str(raw[key]))
    count = raw.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ClusterSpecError(f"{where}.count: must be a positive integer", path=("count",))
    if "count" not in raw:
        return [spec]
    return [_renamed(spec, f"{name}-{i}") for i in range(1, count + 1)]


def _renamed(spec: NodeSpec, name: str) -> NodeSpec:
    clone = copy.deepcopy(spec)
    clone.name = name
    return clone


def load_cluster_spec(data: Any) -> ClusterSpec:
    """Validate a parsed cluster file (a dict) into a :class:`ClusterSpec`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ClusterSpecError(
            f"cluster file: expected a mapping with 'nodes', got {type(data).__name__}"
        )
    unknown = set(data) - {"nodes", "namespaces"}
    if unknown:
        raise ClusterSpecError(
            f"cluster file: unknown top-level field(s) {', '.join(sorted(unknown))}"
        )
    raw_nodes = data.get("nodes") or []
    if not isinstance(raw_nodes, list):
        raise ClusterSpecError("cluster file: 'nodes' must be a list", path=("nodes",))
    nodes: list[NodeSpec] = []
    first: dict[str, int] = {}
    for i, raw in enumerate(raw_nodes):
        try:
            new = _node(raw, f"nodes[{i}]")
        except ClusterSpecError as e:
            raise e.within("nodes", i) from None
        for node in new:
            if node.name in first:
                raise ClusterSpecError(
                    f"node {node.name!r}: duplicate node name", path=("nodes", i, "name")
                )
            first[node.name] = i
        nodes += new
    namespaces = data.get("namespaces") or []
    if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
        raise ClusterSpecError(
            "cluster file: 'namespaces' must be a list of names", path=("namespaces",)
        )
    return ClusterSpec(nodes=nodes, namespaces=list(namespaces))


def load_cluster_file(path: str | Path) -> ClusterSpec:
    """Read and validate a cluster YAML file; :class:`ClusterSpecError` says what is wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClusterSpecError(f"cannot read cluster file: {exc}", source=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        e = yaml_syntax_error(str(path), text, exc)
        raise ClusterSpecError(e.message, expected=e.expected).at(e.source, e.detail) from None
    try:
        return load_cluster_spec(data)
    except ClusterSpecError as exc:
        raise locate_in_yaml(exc, str(path), text) from None


def shipped_cluster_file(name: str) -> Path:
    """The path of a cluster file shipped with the package (``demo`` or ``single``)."""
    path = Path(__file__).parent.parent / "clusters" / f"{name.removesuffix('.yaml')}.yaml"
    if not path.exists():
        raise ClusterSpecError(f"no shipped cluster file {name!r}")
    return path
