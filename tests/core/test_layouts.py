"""MIG layouts: enumeration against a brute force over the catalog's placements, config names."""

from __future__ import annotations

import pytest

from mig_spawner.core.catalog import default_catalog, parse_profile_name
from mig_spawner.core.layouts import (
    Layout,
    balanced,
    default_config_name,
    enumerate_layouts,
    is_valid,
    mig_parted_config,
    node_config,
    placement,
)

MODELS = [m for m in default_catalog() if all(p.placements for p in m.profiles)]


def brute_force(model) -> set[tuple[tuple[str, int], ...]]:
    """Every subset of (profile, placement) pairs without overlap, within compute slices and
    max_instances: their profile counts. Independent of the module's search."""
    plain = [p for p in model.profiles if not parse_profile_name(p.name).suffix]
    options = [(p, start, size) for p in plain for start, size in p.placements]
    found = set()
    for bits in range(1 << len(options)):
        mask = compute = 0
        counts: dict[str, int] = {}
        ok = True
        for i, (p, start, size) in enumerate(options):
            if not bits >> i & 1:
                continue
            cells = ((1 << size) - 1) << start
            if mask & cells:
                ok = False
                break
            mask |= cells
            compute += p.compute_slices
            counts[p.name] = counts.get(p.name, 0) + 1
        if not ok or compute > model.compute_slices or not counts:
            continue
        if any(p.max_instances and counts.get(p.name, 0) > p.max_instances for p in plain):
            continue
        found.add(tuple(sorted(counts.items())))
    return found


@pytest.mark.parametrize("key", ["h100-80gb", "a30", "a100-40gb"])
def test_enumeration_equals_the_brute_force_over_placements(key):
    model = default_catalog().model(key)
    mine = {tuple(sorted(lay.counts)) for lay in enumerate_layouts(model, maximal=False)}
    assert mine == brute_force(model)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.key)
def test_every_layout_of_every_model_is_valid_and_maximal(model):
    layouts = enumerate_layouts(model)
    assert layouts, model.key
    for layout in layouts:
        assert is_valid(layout), layout
        drawn = placement(model, dict(layout.counts))
        cells = [set(range(s, s + n)) for _, s, n in drawn]
        assert sum(len(c) for c in cells) == len(set().union(*cells))  # no overlap
        for name, start, size in drawn:
            assert (start, size) in model.profile(name).placements
        assert layout.compute_slices <= model.compute_slices
        for p in model.profiles:
            if p.placements and not parse_profile_name(p.name).suffix:
                assert (
                    placement(model, {**dict(layout.counts), p.name: layout.count(p.name) + 1})
                    is None
                )


def test_invalid_layouts_are_refused():
    h100 = default_catalog().model("h100-80gb")
    assert placement(h100, {"3g.40gb": 3}) is None  # beyond max_instances
    assert placement(h100, {"4g.40gb": 1, "3g.40gb": 1, "1g.10gb": 1}) is None  # 8 compute
    assert placement(h100, {"1g.5gb": 1}) is None  # an A100-40GB profile
    assert placement(h100, {"7g.80gb": 1}) == [("7g.80gb", 0, 8)]
    with pytest.raises(ValueError, match=r"has no MIG profile .1g\.5gb."):
        Layout.of(h100, {"1g.5gb": 1})


def test_gpu_operator_default_config_names():
    h100 = default_catalog().model("h100-80gb")
    a100 = default_catalog().model("a100-40gb")
    assert default_config_name(Layout.of(h100, {"1g.10gb": 7})) == "all-1g.10gb"
    assert default_config_name(Layout.of(a100, {"1g.10gb": 4})) == "all-1g.10gb"
    assert default_config_name(Layout.of(h100, {"1g.10gb+me": 1})) == "all-1g.10gb.me"
    assert default_config_name(Layout.of(h100, {"3g.40gb": 2})) == "all-3g.40gb"
    assert default_config_name(Layout.of(h100, {"1g.10gb": 6})) is None
    assert balanced(h100) == Layout.of(h100, {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1})
    assert default_config_name(balanced(h100)) == "all-balanced"
    a30 = default_catalog().model("a30")
    assert balanced(a30) == Layout.of(a30, {"1g.6gb": 2, "2g.12gb": 1})


def test_node_configs_default_uniform_custom_and_mixed():
    h100 = default_catalog().model("h100-80gb")
    seven = Layout.of(h100, {"1g.10gb": 7})
    odd = Layout.of(h100, {"4g.40gb": 1, "1g.10gb": 3})
    assert node_config([seven, seven])[0] == "all-1g.10gb"
    name, entries = node_config([odd, odd])
    assert name == "mig-spawner-1x4g.40gb-3x1g.10gb"
    assert entries == [
        {"devices": "all", "mig-enabled": True, "mig-devices": {"1g.10gb": 3, "4g.40gb": 1}}
    ]
    name, entries = node_config([seven, odd, seven])
    assert name.startswith("mig-spawner-mixed-") and len(name) <= 63
    assert [e["devices"] for e in entries] == [[0, 2], [1]]
    doc = mig_parted_config({name: entries})
    assert doc["version"] == "v1" and set(doc["mig-configs"]) == {"all-disabled", name}
