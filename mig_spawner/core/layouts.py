"""MIG layouts of one GPU: which sets of profiles NVIDIA allows, and how mig-parted names them.

Pure: the catalog's placements are the whole truth. A *layout* is a set of GPU instances,
each at a placement the catalog lists for its profile, no two sharing a memory slice, no
more compute slices than the GPU has and no profile more often than its ``max_instances``.
Two layouts with the same profile counts serve the same pods (mig-parted chooses the
placements itself), so layouts are compared and enumerated by their counts.

Config names follow the GPU Operator's ``default-mig-parted-config`` (NVIDIA/gpu-operator,
``assets/state-mig-manager/0400_configmap.yaml``): ``all-<profile>`` holds as many of one
profile as fit (``+`` spelled ``.``: ``all-1g.10gb.me``) and ``all-balanced`` holds two of
the smallest 1g profile, one 2g and one 3g (no 3g on a 4-slice GPU). Every model of the
catalog is covered by that file's ``all-balanced`` device filters.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .catalog import GPUModel, Profile, default_catalog, parse_profile_name

#: The config that turns MIG off (GPU Operator default).
ALL_DISABLED = "all-disabled"
ALL_BALANCED = "all-balanced"
CUSTOM_PREFIX = "mig-spawner-"
_LABEL_MAX = 63


@dataclass(frozen=True)
class Layout:
    """One GPU's MIG layout: ``(profile, count)`` pairs in NVIDIA form, largest profile first."""

    model: str  # catalog key
    counts: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, model: GPUModel, counts: Mapping[str, int]) -> Layout:
        """The layout with these counts (any profile spelling); zero counts dropped."""
        named: dict[str, int] = {}
        for name, n in counts.items():
            profile = model.profile(name)
            if profile is None:
                raise ValueError(f"{model.display_name} has no MIG profile {name!r}")
            if n:
                named[profile.name] = named.get(profile.name, 0) + int(n)
        order = {p.name: i for i, p in enumerate(model.profiles)}
        return cls(model.key, tuple(sorted(named.items(), key=lambda kv: -order[kv[0]])))

    def count(self, profile: str) -> int:
        return dict(self.counts).get(profile, 0)

    @property
    def profiles(self) -> list[str]:
        """Every instance's profile, largest first: ``["3g.40gb", "1g.10gb", "1g.10gb"]``."""
        return [name for name, n in self.counts for _ in range(n)]

    @property
    def compute_slices(self) -> int:
        return sum(parse_profile_name(p).compute_slices * n for p, n in self.counts)

    def mig_devices(self) -> dict[str, int]:
        """mig-parted's ``mig-devices`` map (NVIDIA names, smallest first as NVIDIA writes)."""
        return dict(reversed(self.counts))

    def __str__(self) -> str:
        return " + ".join(f"{n}×{p}" for p, n in self.counts) or "(empty)"


def _usable_profiles(model: GPUModel, names: Iterable[str] | None) -> list[Profile]:
    if names is None:
        chosen = [p for p in model.profiles if not parse_profile_name(p.name).suffix]
    else:
        chosen = [p for p in (model.profile(n) for n in names) if p is not None]
    return [p for p in chosen if p.placements and p.memory_slices]


def placement(model: GPUModel, counts: Mapping[str, int]) -> list[tuple[str, int, int]] | None:
    """A valid placement ``[(profile, start, size)]`` of ``counts`` on one GPU, or None.

    Exact (a search over the catalog's placements, largest instances first); None also for
    a profile the model does not have, one without known placements, or counts beyond
    ``max_instances`` or the GPU's compute slices.
    """
    items: list[Profile] = []
    compute = 0
    for name, n in counts.items():
        profile = model.profile(name)
        if profile is None or not profile.placements or n < 0:
            return None
        if profile.max_instances is not None and n > profile.max_instances:
            return None
        items += [profile] * n
        compute += profile.compute_slices * n
    if compute > model.compute_slices:
        return None
    items.sort(key=lambda p: (-(p.memory_slices or 0), p.name))
    placed: list[tuple[str, int, int]] = []

    def fits(i: int, mask: int, lowest: int) -> bool:
        if i == len(items):
            return True
        profile = items[i]
        same = i > 0 and items[i - 1] is profile
        for start, size in profile.placements:
            bits = ((1 << size) - 1) << start
            if (same and start < lowest) or mask & bits:
                continue
            placed.append((profile.name, start, size))
            if fits(i + 1, mask | bits, start + 1):
                return True
            placed.pop()
        return False

    return placed if fits(0, 0, 0) else None


def is_valid(layout: Layout) -> bool:
    return placement(default_catalog().model(layout.model), dict(layout.counts)) is not None


def enumerate_layouts(
    model: GPUModel, profiles: Iterable[str] | None = None, *, maximal: bool = True
) -> list[Layout]:
    """Every valid layout of ``model`` built from ``profiles`` (default: those without a
    ``+me``-style suffix), as distinct counts. ``maximal``: only those to which no further
    instance of those profiles can be added (the others serve a subset of the same pods).
    """
    names = tuple(p.name for p in _usable_profiles(model, profiles))
    return list(_enumerate(model.key, names, maximal))


@functools.lru_cache(maxsize=256)
def _enumerate(key: str, names: tuple[str, ...], maximal: bool) -> tuple[Layout, ...]:
    model = default_catalog().model(key)
    found: set[tuple[int, ...]] = set()

    def grow(i: int, counts: list[int]) -> None:
        if i == len(names):
            found.add(tuple(counts))
            return
        n = 0
        while True:
            counts.append(n)
            trial = dict(zip(names, counts, strict=False))
            if placement(model, trial) is None:
                counts.pop()
                return
            grow(i + 1, counts)
            counts.pop()
            n += 1

    grow(0, [])
    out = []
    for counts in sorted(found, reverse=True):
        if not any(counts):
            continue
        as_map = dict(zip(names, counts, strict=True))
        if maximal and any(
            placement(model, {**as_map, name: as_map[name] + 1}) is not None for name in names
        ):
            continue
        out.append(Layout.of(model, as_map))
    return tuple(out)


# --------------------------------------------------------------------------- config names


def _k8s(name: str) -> str:
    return parse_profile_name(name).k8s_name


def max_alone(model: GPUModel, profile: str) -> int:
    """How many instances of ``profile`` fit one GPU on their own."""
    n = 0
    while placement(model, {profile: n + 1}) is not None:
        n += 1
    return n


def balanced(model: GPUModel) -> Layout | None:
    """The GPU Operator's ``all-balanced`` for ``model``: 2 × smallest 1g, 1 × 2g, 1 × 3g."""
    plain = [p for p in model.profiles if not parse_profile_name(p.name).suffix]
    counts: dict[str, int] = {}
    for g, n in ((1, 2), (2, 1), (3, 1)):
        of_g = [p for p in plain if p.compute_slices == g]
        if of_g:
            counts[of_g[0].name] = n
    if not counts or placement(model, counts) is None:
        return None
    return Layout.of(model, counts)


def default_config_name(layout: Layout) -> str | None:
    """The GPU Operator default config that gives every GPU this layout, if there is one."""
    model = default_catalog().model(layout.model)
    if len(layout.counts) == 1:
        ((profile, n),) = layout.counts
        if n == max_alone(model, profile):
            return f"all-{_k8s(profile)}"
    if layout == balanced(model):
        return ALL_BALANCED
    return None


def node_config(layouts: list[Layout]) -> tuple[str, list[dict]]:
    """(config name, mig-parted entries) giving GPU ``i`` of a node ``layouts[i]``.

    A default name when every GPU has the same layout and the GPU Operator has a config
    for it; else ``mig-spawner-<counts>`` (uniform) or ``mig-spawner-<digest>`` (mixed).
    """
    if not layouts:
        return ALL_DISABLED, [{"devices": "all", "mig-enabled": False}]
    if len(set(layouts)) == 1:
        entries = [{"devices": "all", "mig-enabled": True, "mig-devices": layouts[0].mig_devices()}]
        name = default_config_name(layouts[0])
        if name is None:
            parts = "-".join(f"{n}x{_k8s(p)}" for p, n in layouts[0].counts)
            name = CUSTOM_PREFIX + parts
            if len(name) > _LABEL_MAX:
                name = CUSTOM_PREFIX + _digest(entries)
        return name, entries
    groups: dict[Layout, list[int]] = {}
    for i, layout in enumerate(layouts):
        groups.setdefault(layout, []).append(i)
    entries = [
        {"devices": devices, "mig-enabled": True, "mig-devices": layout.mig_devices()}
        for layout, devices in sorted(groups.items(), key=lambda kv: kv[1][0])
    ]
    return CUSTOM_PREFIX + "mixed-" + _digest(entries), entries


def _digest(entries: list[dict]) -> str:
    text = json.dumps(entries, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def mig_parted_config(configs: Mapping[str, list[dict]]) -> dict:
    """The ``config.yaml`` of a mig-parted ConfigMap holding ``configs`` plus ``all-disabled``."""
    out = {ALL_DISABLED: [{"devices": "all", "mig-enabled": False}]}
    out.update({name: configs[name] for name in sorted(configs)})
    return {"version": "v1", "mig-configs": out}
