"""What a Kubernetes Node offers: GPU slice types and how many of each.

Input is a Node exactly as the API returns it (a dict, camelCase). Output is a frozen
:class:`NodeInfo`. A garbled node never raises: the parts that make sense are kept, the
rest is listed in ``NodeInfo.problems`` and offers nothing. Only an object that is not a
Node at all (no name) raises :class:`ValueError`.

The three ways NVIDIA's device plugin advertises GPUs:

* **mixed** strategy: ``nvidia.com/mig-<profile>`` per MIG profile, plus ``nvidia.com/gpu``
  for GPUs on the node with MIG disabled (whole GPUs);
* **single** strategy: ``nvidia.com/gpu`` with ``nvidia.com/gpu.product`` ending in
  ``-MIG-<profile>``; with ``nvidia.com/mig.config=all-disabled`` (no ``-MIG-``) they are
  whole GPUs;
* **none** (no MIG): ``nvidia.com/gpu`` whole GPUs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .catalog import (
    MAX_COMPUTE_SLICES,
    MIG_RESOURCE_PREFIX,
    WHOLE_GPU,
    WHOLE_GPU_RESOURCE,
    Catalog,
    parse_profile_name,
    profile_from_resource,
    short_gpu_name,
)

PRODUCT_LABEL = "nvidia.com/gpu.product"
STRATEGY_LABEL = "nvidia.com/mig.strategy"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
GPU_SM_LABEL = "nvidia.com/gpu.multiprocessors"
_MIG_SUFFIX = re.compile(r"-MIG-(?P<profile>.+)$")
_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
#: Taints Kubernetes' node lifecycle controller puts on cordoned and NotReady nodes. While
#: the node is unusable they say what ``why_unusable`` says, so they must not also hide the
#: node from a tier's reach (that turned "cordoned" into "no GPU fits this tier").
CONDITION_TAINTS = frozenset(
    {
        "node.kubernetes.io/unschedulable",
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    }
)


@dataclass(frozen=True)
class SliceType:
    """One kind of GPU allocation a pod can ask for: a MIG profile on a GPU model, or a whole GPU.

    Identity is (strategy, product, profile): the same profile on two GPU models is two
    slice types (an A100 1g.10gb has 14 SMs, an H100 1g.10gb 16). Memory and SM figures
    come from the node's GFD labels when present (they vary by driver), else the catalog.
    """

    strategy: str  # "mixed" | "single" | "whole"
    product: str  # GFD product of the physical GPU, e.g. "NVIDIA-H100-80GB-HBM3" ("" if unknown)
    profile: str  # device-plugin profile name ("1g.10gb", "1g.10gb.me") or WHOLE_GPU
    compute_slices: int
    memory_gb: float  # nominal, as in the profile name
    memory_mib: int | None = field(default=None, compare=False)
    sm_count: int | None = field(default=None, compare=False)
    #: the label the pod must select to land on this type (single: the -MIG- product label)
    selector_value: str = field(default="", compare=False)

    @property
    def resource(self) -> str:
        if self.strategy == "mixed":
            return MIG_RESOURCE_PREFIX + self.profile
        return WHOLE_GPU_RESOURCE

    @property
    def is_whole_gpu(self) -> bool:
        return self.profile == WHOLE_GPU

    @property
    def gpu_name(self) -> str:
        return short_gpu_name(self.product) if self.product else "unknown GPU"

    @property
    def node_selector(self) -> dict[str, str]:
        """Pins the pod to nodes with this GPU model (single strategy: this exact profile)."""
        value = self.selector_value or self.product
        return {PRODUCT_LABEL: value} if value else {}

    @property
    def label(self) -> str:
        """Short, user-facing: '1g.10gb on H100 80GB' / 'whole H100 80GB GPU'."""
        if self.is_whole_gpu:
            return f"whole {self.gpu_name} GPU"
        return f"{self.profile} on {self.gpu_name}"

    def describe(self) -> str:
        """User-facing detail: '1 × 1g.10gb · 10 GB · 16 SMs on H100 80GB'."""
        mem = f"{self.memory_gb:g} GB"
        sms = f" · {self.sm_count} SMs" if self.sm_count else ""
        if self.is_whole_gpu:
            return f"1 × whole GPU · {mem}{sms} on {self.gpu_name}"
        return f"1 × {self.profile} · {mem}{sms} on {self.gpu_name}"

    @property
    def sort_key(self) -> tuple:
        rank = {"mixed": 0, "single": 1, "whole": 2}.get(self.strategy, 3)
        return (self.compute_slices, self.memory_gb, self.profile, rank, self.product)


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class NodeInfo:
    name: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    unschedulable: bool
    ready: bool
    #: allocatable count per slice type
    offers: Mapping[SliceType, int]
    #: extended resource name -> the slice type it stands for on this node
    resources: Mapping[str, SliceType]
    problems: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        return self.ready and not self.unschedulable

    def why_unusable(self) -> str | None:
        if not self.ready:
            return "NotReady"
        if self.unschedulable:
            return "cordoned"
        return None

    def admits(self, node_selector: Mapping[str, str], tolerations) -> str | None:
        """None if a pod with this selector and these tolerations may land here, else why not."""
        for key, value in node_selector.items():
            if self.labels.get(key) != value:
                return f"lacks label {key}={value}"
        for taint in self.taints:
            if taint.key in CONDITION_TAINTS and not self.usable:
                continue  # reported as cordoned / NotReady instead
            if taint.effect in _BLOCKING_EFFECTS and not tolerates(tolerations, taint):
                return f"has untolerated taint {taint.key}={taint.value}:{taint.effect}"
        return None


def tolerates(tolerations, taint: Taint) -> bool:
    """Kubernetes' toleration matching (key/operator/value/effect)."""
    for tol in tolerations:
        effect = tol.get("effect") or ""
        if effect and effect != taint.effect:
            continue
        key = tol.get("key") or ""
        op = tol.get("operator") or "Equal"
        if op == "Exists":
            if not key or key == taint.key:
                return True
        elif key == taint.key and (tol.get("value") or "") == taint.value:
            return True
    return False


def parse_count(value: Any) -> int | None:
    """An extended-resource quantity ("7", 7) as an int; None if it is not a whole count."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value.strip())
    return None


def _int_label(labels: Mapping[str, str], key: str) -> int | None:
    value = labels.get(key)
    return int(value) if isinstance(value, str) and value.isdecimal() else None


def _whole_gpu_type(product: str, labels: Mapping[str, str], catalog: Catalog) -> SliceType:
    model = catalog.model_for_product(product)
    mib = _int_label(labels, GPU_MEMORY_LABEL) or (model.memory_mib if model else None)
    if model and model.profiles:
        gb = max(p.memory_gb for p in model.profiles)
    else:
        gb = round(mib / 1024) if mib else 0
    return SliceType(
        strategy="whole",
        product=product,
        profile=WHOLE_GPU,
        compute_slices=MAX_COMPUTE_SLICES,
        memory_gb=gb,
        memory_mib=mib,
        sm_count=_int_label(labels, GPU_SM_LABEL),
        selector_value=product,
    )


def _mig_type(
    strategy: str,
    product: str,
    profile: str,
    labels: Mapping[str, str],
    selector: str,
    catalog: Catalog,
) -> SliceType:
    parsed = parse_profile_name(profile)
    model = catalog.model_for_product(product)
    known = model.profile(parsed.k8s_name) if model else None
    if strategy == "mixed":
        prefix = f"nvidia.com/mig-{parsed.k8s_name}"
        mib = _int_label(labels, prefix + ".memory")
        sms = _int_label(labels, prefix + ".multiprocessors")
    else:
        mib = _int_label(labels, GPU_MEMORY_LABEL)
        sms = _int_label(labels, GPU_SM_LABEL)
    return SliceType(
        strategy=strategy,
        product=product,
        profile=parsed.k8s_name,
        compute_slices=parsed.compute_slices,
        memory_gb=parsed.memory_gb,
        memory_mib=mib or (known.memory_mib if known else None),
        sm_count=sms or (known.sm_count if known else None),
        selector_value=selector,
    )


def _str_dict(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def parse_node(obj: Any, catalog: Catalog) -> NodeInfo:
    """Turn a Node object (dict) into a :class:`NodeInfo`. Raises ValueError only if unnamed.

    ``catalog`` gives the figures (memory, SMs) a node's labels do not.
    """
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ValueError("not a Node: metadata.name is missing")
    problems: list[str] = []
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    labels = _str_dict(meta.get("labels"))
    if meta.get("labels") is not None and not isinstance(meta.get("labels"), Mapping):
        problems.append("metadata.labels is not a mapping")

    taints = []
    raw_taints = spec.get("taints") or []
    if not isinstance(raw_taints, list):
        problems.append("spec.taints is not a list")
        taints.append(Taint("<malformed>", "", "NoSchedule"))  # fail safe: block
        raw_taints = []
    for raw in raw_taints:
        if isinstance(raw, Mapping) and isinstance(raw.get("key"), str):
            taints.append(Taint(raw["key"], str(raw.get("value") or ""), str(raw.get("effect"))))
        else:
            problems.append(f"ignored malformed taint {raw!r}")
            taints.append(Taint("<malformed>", "", "NoSchedule"))  # fail safe: block

    ready = False
    conditions = status.get("conditions") or []
    if not isinstance(conditions, list):
        problems.append("status.conditions is not a list")
        conditions = []  # fail safe: not Ready
    for cond in conditions:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            ready = cond.get("status") == "True"

    raw_product = labels.get(PRODUCT_LABEL, "")
    match = _MIG_SUFFIX.search(raw_product)
    product = raw_product[: match.start()] if match else raw_product
    single_profile = match.group("profile") if match else None

    offers: dict[SliceType, int] = {}
    resources: dict[str, SliceType] = {}
    allocatable = status.get("allocatable")
    if not isinstance(allocatable, Mapping):
        if allocatable is not None:
            problems.append("status.allocatable is not a mapping")
        allocatable = {}
    for resource, raw_count in allocatable.items():
        if not isinstance(resource, str) or not resource.startswith("nvidia.com/"):
            continue
        count = parse_count(raw_count)
        if count is None:
            problems.append(f"allocatable {resource}={raw_count!r} is not a whole count")
            continue
        try:
            if resource == WHOLE_GPU_RESOURCE:
                if single_profile is not None:
                    if single_profile == "INVALID":
                        problems.append("GPU Feature Discovery reports an invalid MIG layout")
                        continue
                    kind = _mig_type(
                        "single", product, single_profile, labels, raw_product, catalog
                    )
                else:
                    kind = _whole_gpu_type(product, labels, catalog)
            elif resource.startswith(MIG_RESOURCE_PREFIX):
                profile = profile_from_resource(resource)
                if profile is None:
                    problems.append(f"ignored {resource}: not a MIG profile name")
                    continue
                kind = _mig_type("mixed", product, profile, labels, product, catalog)
            else:
                continue
        except ValueError as e:
            problems.append(f"ignored {resource}: {e}")
            continue
        resources[resource] = kind
        if count:
            offers[kind] = offers.get(kind, 0) + count

    if offers and not product:
        # Granting it would pin the pod to nothing but "some GPU": GFD labels first.
        problems.append(
            "GPU Feature Discovery has not labelled it (no nvidia.com/gpu.product): "
            "its GPUs are not offered until it does"
        )
        offers, resources = {}, {}
    return NodeInfo(
        name=name,
        labels=labels,
        taints=tuple(taints),
        unschedulable=bool(spec.get("unschedulable")),
        ready=ready,
        offers=offers,
        resources=resources,
        problems=tuple(problems),
    )
