"""The GPU catalog: MIG profile names, Kubernetes resource names and per-model geometry.

Pure: reads nothing but the package's own ``data/catalog.json``; no kubespawner, no I/O library.
A profile has three spellings, all accepted on input: NVIDIA's ``1g.10gb+me`` (nvidia-smi,
mig-parted), NVML's ``MIG 1g.10gb+me`` and the device plugin's ``1g.10gb.me`` (``+`` becomes
``.``, ``-me`` stays), used in ``nvidia.com/mig-1g.10gb.me`` and single-strategy product labels.
A name gives only compute slices and nominal GB; profile IDs, memory slices, SMs and placements
depend on the GPU model, keyed by GPU Feature Discovery's ``nvidia.com/gpu.product`` label.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from importlib import resources
from typing import Any

from .errors import InputError, leading_path

MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
WHOLE_GPU_RESOURCE = "nvidia.com/gpu"
#: The slice-type name (and chain entry) of a whole, non-MIG GPU (``nvidia.com/gpu``).
WHOLE_GPU = "whole-gpu"
#: Compute slices of a whole GPU: no MIG-capable GPU has more than seven.
MAX_COMPUTE_SLICES = 7

#: Attribute suffixes in NVIDIA form, in the order the catalog sorts them.
PROFILE_SUFFIXES: tuple[str, ...] = ("", "+me", "+me.all", "+gfx", "-me")

_NAME_RE = re.compile(r"(?:MIG )?([1-7])g\.([1-9][0-9]{0,5})gb((?:[+.](?:me\.all|me|gfx))|-me)?")
_COMPUTE_INSTANCE_RE = re.compile(r"(?:MIG )?[0-9]+c\.[0-9]+g\.[0-9]+gb.*")
_HINT = "expected <1-7>g.<GB>gb, optionally followed by +me, +me.all, +gfx or -me"
_CI_HINT = "a compute-instance profile; only GPU-instance profiles like '3g.20gb' are resources"
_MIG_LABEL_PART = "-mig-"
_SHARED_SUFFIX = "-shared"
_NVIDIA_PREFIX = "nvidia-"


class CatalogError(InputError):
    """A MIG profile name or catalog entry that cannot be used (a :class:`ValueError`).

    Its ``path`` is the entry's place in the catalog, e.g. ``("catalog", 0, "profiles", 2)``.
    """

    def __init__(self, message: str, **kwargs):
        kwargs.setdefault("path", leading_path(message, root="catalog"))
        super().__init__(message, **kwargs)


@dataclass(frozen=True)
class ProfileName:
    """A parsed GPU-instance profile name such as ``1g.10gb+me``.

    ``compute_slices`` is the ``1`` of ``1g.10gb``, ``memory_gb`` the ``10`` (nominal GB, as
    NVIDIA names it, not a measurement) and ``suffix`` one of :data:`PROFILE_SUFFIXES`.
    """

    compute_slices: int
    memory_gb: int
    suffix: str = ""

    def __post_init__(self) -> None:
        if type(self.compute_slices) is not int or not 1 <= self.compute_slices <= 7:
            raise CatalogError(f"compute_slices must be 1..7, got {self.compute_slices!r}")
        if type(self.memory_gb) is not int or self.memory_gb < 1:
            raise CatalogError(f"memory_gb must be a positive integer, got {self.memory_gb!r}")
        if self.suffix not in PROFILE_SUFFIXES:
            raise CatalogError(f"suffix must be one of {PROFILE_SUFFIXES}, got {self.suffix!r}")

    @property
    def name(self) -> str:
        """The NVIDIA form, e.g. ``1g.10gb+me``."""
        return f"{self.compute_slices}g.{self.memory_gb}gb{self.suffix}"

    @property
    def k8s_name(self) -> str:
        """The device-plugin form, e.g. ``1g.10gb.me`` (``+`` becomes ``.``; ``-me`` stays)."""
        return self.name.replace("+", ".")

    def __str__(self) -> str:
        return self.name


def parse_profile_name(name: str) -> ProfileName:
    """Parse a GPU-instance profile name in NVIDIA, NVML (``MIG 1g.10gb``) or Kubernetes form.

    Raises :class:`CatalogError` (``not a MIG profile name: '...'``) for anything else, including
    compute-instance names such as ``1c.3g.20gb``, which no device plugin exposes as a resource.
    """
    match = _NAME_RE.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        hint = _HINT
        if isinstance(name, str) and _COMPUTE_INSTANCE_RE.fullmatch(name):
            hint = _CI_HINT
        raise CatalogError(f"not a MIG profile name: {name!r} ({hint})")
    suffix = match[3] or ""
    if suffix.startswith("."):
        suffix = "+" + suffix[1:]
    return ProfileName(int(match[1]), int(match[2]), suffix)


def profile_from_resource(resource: str) -> str | None:
    """``nvidia.com/mig-1g.10gb.me`` -> ``1g.10gb.me`` (Kubernetes form).

    Returns ``None`` for ``nvidia.com/gpu`` and for anything that is not a MIG resource name
    spelled exactly as the device plugin spells it.
    """
    if not isinstance(resource, str) or not resource.startswith(MIG_RESOURCE_PREFIX):
        return None
    rest = resource[len(MIG_RESOURCE_PREFIX) :]
    try:
        parsed = parse_profile_name(rest)
    except ValueError:
        return None
    return rest if parsed.k8s_name == rest else None


def resource_for_profile(name: str) -> str:
    """Any accepted profile spelling -> its mixed-strategy resource (``nvidia.com/mig-1g.10gb``)."""
    return MIG_RESOURCE_PREFIX + parse_profile_name(name).k8s_name


def _sort_key(name: str) -> tuple[int, int, int]:
    parsed = parse_profile_name(name)
    return parsed.memory_gb, parsed.compute_slices, PROFILE_SUFFIXES.index(parsed.suffix)


@dataclass(frozen=True)
class Profile:
    """One GPU-instance profile of one GPU model.

    ``name`` is in NVIDIA form. ``None`` means unknown (not found in any source); an empty
    ``placements`` means the placements are unknown. A placement is ``(start, size)`` in memory
    slices; ``compute_slices`` is NVML's ``sliceCount``.
    """

    name: str
    gi_profile_id: int | None
    compute_slices: int
    memory_slices: int | None
    memory_mib: int | None
    sm_count: int | None
    max_instances: int | None
    placements: tuple[tuple[int, int], ...]

    @property
    def k8s_name(self) -> str:
        """The device-plugin form of the name, e.g. ``1g.10gb.me``."""
        return parse_profile_name(self.name).k8s_name

    @property
    def resource(self) -> str:
        """The mixed-strategy extended resource, e.g. ``nvidia.com/mig-1g.10gb.me``."""
        return MIG_RESOURCE_PREFIX + self.k8s_name

    @property
    def memory_gb(self) -> int:
        """Nominal memory in GB, from the name (the ``10`` of ``1g.10gb``)."""
        return parse_profile_name(self.name).memory_gb


@dataclass(frozen=True)
class GPUModel:
    """A MIG-capable GPU model and its GPU-instance profiles, smallest first.

    ``products`` are the ``nvidia.com/gpu.product`` label values GPU Feature Discovery writes for
    it, canonical first. ``memory_mib`` is the whole GPU's memory (``nvidia.com/gpu.memory``) or
    ``None`` if unknown. ``source`` and ``confidence`` say where the data come from.
    """

    key: str
    display_name: str
    products: tuple[str, ...]
    memory_slices: int
    compute_slices: int
    memory_mib: int | None
    profiles: tuple[Profile, ...]
    source: str = ""
    confidence: str = ""

    def profile(self, name: str) -> Profile | None:
        """The profile called ``name`` (any accepted spelling), or ``None`` if there is none."""
        try:
            wanted = parse_profile_name(name).name
        except ValueError:
            return None
        return next((p for p in self.profiles if p.name == wanted), None)

    def single_strategy_product(self, profile_name: str) -> str:
        """The ``nvidia.com/gpu.product`` label GFD writes under the single strategy.

        GFD joins the product, ``MIG`` and the device plugin's profile name, which has ``+``
        replaced by ``.`` (label values cannot hold ``+``): ``NVIDIA-H100-80GB-HBM3-MIG-1g.10gb.me``
        (k8s-device-plugin ``internal/resource/nvml-mig-device.go``, ``GetName``).
        Raises :class:`CatalogError` if this model has no such profile.
        """
        profile = self.profile(profile_name)
        if profile is None:
            raise CatalogError(f"{self.display_name} has no MIG profile {profile_name!r}")
        return f"{self.products[0]}-MIG-{profile.k8s_name}"


def _bare_product(product: str) -> str:
    """A label's lookup form: case-folded, without GFD's suffixes or newer drivers' ``NVIDIA-``."""
    normalised = "-".join(product.split()).casefold()
    return _strip_product_suffixes(normalised).removeprefix(_NVIDIA_PREFIX)


def _strip_product_suffixes(product: str) -> str:
    """Drop GFD's ``-SHARED`` and ``-MIG-<profile>`` (or ``-MIG-INVALID``) suffixes."""
    if product.casefold().endswith(_SHARED_SUFFIX):
        product = product[: -len(_SHARED_SUFFIX)]
    cut = product.casefold().find(_MIG_LABEL_PART)
    return product[:cut] if cut > 0 else product


class Catalog:
    """An immutable, indexed collection of :class:`GPUModel`."""

    def __init__(self, models: Iterable[GPUModel]) -> None:
        self.models: tuple[GPUModel, ...] = tuple(models)
        self._by_key: dict[str, GPUModel] = {}
        self._by_product: dict[str, GPUModel] = {}
        for model in self.models:
            if model.key in self._by_key:
                raise CatalogError(f"duplicate GPU model key {model.key!r}")
            self._by_key[model.key] = model
            if len({p.casefold() for p in model.products}) != len(model.products):
                raise CatalogError(f"{model.key}: a product is listed twice")
            for product in model.products:
                other = self._by_product.setdefault(_bare_product(product), model).key
                if other != model.key:
                    raise CatalogError(
                        f"product {product!r} is listed twice ({other}, {model.key})"
                    )

        self._hash = hash(self.models)

    def __eq__(self, other: object) -> bool:  # a value: equal models, equal catalogs
        return isinstance(other, Catalog) and self.models == other.models

    def __hash__(self) -> int:
        return self._hash

    def __iter__(self) -> Iterator[GPUModel]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __repr__(self) -> str:
        return f"Catalog({[m.key for m in self.models]})"

    def model(self, key: str) -> GPUModel:
        """The model with this catalog key; :class:`KeyError` naming the known keys otherwise."""
        try:
            return self._by_key[key]
        except (KeyError, TypeError):
            known = ", ".join(self._by_key)
            raise KeyError(f"unknown GPU model key {key!r}; known keys: {known}") from None

    def model_for_product(self, product: str | None) -> GPUModel | None:
        """The model behind an ``nvidia.com/gpu.product`` label, or ``None`` if unknown.

        Matches case-insensitively; also accepts single-strategy labels (``...-MIG-1g.10gb``),
        ``-SHARED`` labels, the old-driver form without ``NVIDIA-`` and driver names with spaces.
        """
        if not isinstance(product, str) or not product.strip():
            return None
        return self._by_product.get(_bare_product(product))

    def to_json(self) -> list[dict[str, Any]]:
        """The catalog as plain data: exactly what ``mig-spawner catalog --json`` prints."""
        return [
            {f: getattr(m, f) for f in _MODEL_FIELDS}
            | {"products": list(m.products), "profiles": [_profile_json(p) for p in m.profiles]}
            for m in self.models
        ]


def _profile_json(profile: Profile) -> dict[str, Any]:
    placements = [list(pair) for pair in profile.placements]
    return asdict(profile) | {"placements": placements, "resource": profile.resource}


# Loading and validation.
_MODEL_FIELDS = ("key", "display_name", "products", "memory_slices", "compute_slices", "memory_mib")
_PROFILE_FIELDS = {f.name for f in fields(Profile)}
_NULLABLE_INTS = ("gi_profile_id", "memory_slices", "memory_mib", "sm_count", "max_instances")
_KEY_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _check(condition: object, where: str, message: str) -> None:
    if not condition:
        raise CatalogError(f"{where}: {message}")


def _fields(obj: Any, required: set[str], optional: set[str], where: str) -> dict[str, Any]:
    _check(isinstance(obj, dict), where, f"expected an object, got {type(obj).__name__}")
    missing, unknown = sorted(required - obj.keys()), sorted(obj.keys() - required - optional)
    _check(not missing, where, f"missing {', '.join(missing)}")
    _check(not unknown, where, f"unknown field(s) {', '.join(unknown)}")
    return obj


def _int(obj: dict[str, Any], key: str, where: str, minimum: int = 1, null: bool = False) -> Any:
    value = obj[key]
    if value is None and null:
        return None
    expected = f"{'null or ' if null else ''}an integer >= {minimum}"
    ok = type(value) is int and value >= minimum
    _check(ok, where, f"{key} must be {expected}, got {value!r}")
    return value


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj[key]
    _check(isinstance(value, str) and value.strip(), where, f"{key}: bad string {value!r}")
    return value


def _load_profile(raw: Any, model: dict[str, Any], where: str) -> Profile:
    raw = _fields(raw, _PROFILE_FIELDS, {"resource"}, where)
    name = _str(raw, "name", where)
    try:
        parsed = parse_profile_name(name)
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    _check(parsed.name == name, where, f"name {name!r} is not in NVIDIA form {parsed.name!r}")
    where = f"{where} ({name})"
    ints = {
        f: _int(raw, f, where, minimum=int(f != "gi_profile_id"), null=True) for f in _NULLABLE_INTS
    }
    compute, memory_slices = _int(raw, "compute_slices", where), ints["memory_slices"]
    _check(compute == parsed.compute_slices, where, f"compute_slices {compute} disagrees with name")
    _check(compute <= model["compute_slices"], where, f"compute_slices {compute} > the GPU's")
    _check((memory_slices or 0) <= model["memory_slices"], where, "memory_slices > the GPU's")
    mib, gpu_mib = ints["memory_mib"], model["memory_mib"]
    _check(not (mib and gpu_mib and mib > gpu_mib), where, "memory_mib > the GPU's")
    placements = raw["placements"]
    _check(isinstance(placements, list), where, "placements must be a list of [start, size]")
    for pair in placements:
        ok = isinstance(pair, list) and len(pair) == 2 and all(type(v) is int for v in pair)
        ok = ok and pair[0] >= 0 and pair[1] >= 1 and pair[0] + pair[1] <= model["memory_slices"]
        _check(ok and pair[1] == (memory_slices or pair[1]), where, f"bad placement {pair!r}")
    pairs = tuple((start, size) for start, size in placements)
    _check(list(pairs) == sorted(set(pairs)), where, "placements must be sorted and unique")
    most = ints["max_instances"]
    _check(not (pairs and most and most > len(pairs)), where, "max_instances > placements")
    profile = Profile(name=name, compute_slices=compute, placements=pairs, **ints)
    resource = raw.get("resource", profile.resource)
    _check(resource == profile.resource, where, f"resource must be {profile.resource!r}")
    return profile


def _load_model(raw: Any, where: str) -> GPUModel:
    raw = _fields(raw, {*_MODEL_FIELDS, "profiles"}, {"source", "confidence"}, where)
    key = _str(raw, "key", where)
    _check(_KEY_RE.fullmatch(key), where, f"key {key!r} is not lower-case words joined by '-'")
    where = f"{where} ({key})"
    products = raw["products"]
    _check(isinstance(products, list) and products, where, "products: a non-empty list")
    for product in products:
        ok = isinstance(product, str) and product.split() == [product]
        _check(ok, where, f"bad product label {product!r}")
    slices = {f: _int(raw, f, where) for f in ("memory_slices", "compute_slices")}
    _check(slices["compute_slices"] <= slices["memory_slices"], where, "compute > memory slices")
    _int(raw, "memory_mib", where, null=True)
    texts = {f: raw.get(f, "") for f in ("source", "confidence")}
    _check(all(isinstance(t, str) for t in texts.values()), where, "source/confidence: strings")
    raw_profiles = raw["profiles"]
    _check(isinstance(raw_profiles, list) and raw_profiles, where, "profiles: a non-empty list")
    profiles = [_load_profile(p, raw, f"{where}.profiles[{i}]") for i, p in enumerate(raw_profiles)]
    names = [p.name for p in profiles]
    ids = [p.gi_profile_id for p in profiles if p.gi_profile_id is not None]
    _check(len(set(names)) == len(names), where, "profile names must be unique")
    _check(len(set(ids)) == len(ids), where, "gi_profile_ids must be unique")
    profiles.sort(key=lambda p: _sort_key(p.name))
    return GPUModel(
        key=key,
        display_name=_str(raw, "display_name", where),
        products=tuple(products),
        memory_mib=raw["memory_mib"],
        profiles=tuple(profiles),
        **slices,
        **texts,
    )


def load_catalog(data: list[dict]) -> Catalog:
    """Build a :class:`Catalog` from plain data (the ``catalog.json`` shape, or :meth:`to_json`'s).

    Profiles are sorted smallest first: by nominal GB, then compute slices, then suffix in
    :data:`PROFILE_SUFFIXES` order. Raises :class:`CatalogError` naming the offending entry and
    field for malformed data.
    """
    _check(isinstance(data, list) and data, "catalog", "expected a non-empty list of GPU models")
    return Catalog(_load_model(raw, f"catalog[{i}]") for i, raw in enumerate(data))


@functools.cache
def default_catalog() -> Catalog:
    """The catalog shipped in ``mig_spawner/core/data/catalog.json``, loaded once."""
    text = (resources.files("mig_spawner.core") / "data" / "catalog.json").read_text(
        encoding="utf-8"
    )
    return load_catalog(json.loads(text))


def short_gpu_name(product: str | None, catalog: Catalog | None = None) -> str:
    """A GFD product label as a user reads it: ``NVIDIA-H100-80GB-HBM3`` -> ``H100 80GB``.

    Known products give the model's display name. Unknown ones lose ``NVIDIA-``, ``-SHARED`` and
    ``-MIG-...`` and have ``-`` replaced by spaces (``NVIDIA-L40S`` -> ``L40S``).
    """
    if not isinstance(product, str) or not product.strip():
        return "unknown GPU"
    model = (catalog or default_catalog()).model_for_product(product)
    if model is not None:
        return model.display_name
    name = _strip_product_suffixes("-".join(product.split()))
    if name.casefold().startswith(_NVIDIA_PREFIX):
        name = name[len(_NVIDIA_PREFIX) :]
    return name.replace("-", " ").strip() or product.strip()
