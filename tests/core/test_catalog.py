"""Tests for mig_spawner.core.catalog and the shipped data/catalog.json.

The reference under ../shared is read at test time as an independent truth: the NVML readings of
a real H100 80GB HBM3 and H200 must match the catalog exactly, and mig-profiles.yaml must agree
with it everywhere the catalog does not deliberately (and here explicitly) differ.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
import subprocess
import sys
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from mig_spawner.core.catalog import (
    MIG_RESOURCE_PREFIX,
    PROFILE_SUFFIXES,
    WHOLE_GPU_RESOURCE,
    Catalog,
    GPUModel,
    Profile,
    ProfileName,
    default_catalog,
    load_catalog,
    parse_profile_name,
    profile_from_resource,
    resource_for_profile,
    short_gpu_name,
)

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / ".." / "shared" / "reference"
DATA_FILE = REPO / "mig_spawner" / "core" / "data" / "catalog.json"
NVML_FILES = {"h100-80gb": "h100-80gb-hbm3.json", "h200-141gb": "h200.json"}
YAML_KEYS = {
    "a100-40gb": "a100-40gb",
    "a100-80gb": "a100-80gb",
    "a30": "a30-24gb",
    "h100-80gb": "h100-80gb",
    "h100-94gb": "h100-94gb",
    "h100-96gb": "h100-96gb-gh200",
    "h200-141gb": "h200-141gb",
    "gh200-144gb": "gh200-144gb",
    "b200": "b200-180gb",
    "gb200": "gb200",
    "rtx-pro-6000": "rtx-pro-6000-blackwell-96gb",
}
DISPLAY_NAMES = {
    "a100-40gb": "A100 40GB",
    "a100-80gb": "A100 80GB",
    "a30": "A30",
    "h100-80gb": "H100 80GB",
    "h100-94gb": "H100 NVL 94GB",
    "h100-96gb": "GH200 96GB",
    "h200-141gb": "H200 141GB",
    "gh200-144gb": "GH200 144GB",
    "b200": "B200",
    "gb200": "GB200",
    "rtx-pro-6000": "RTX PRO 6000 Blackwell",
}
MODEL_JSON_KEYS = [
    "key",
    "display_name",
    "products",
    "memory_slices",
    "compute_slices",
    "memory_mib",
    "profiles",
]
PROFILE_JSON_KEYS = [
    "name",
    "gi_profile_id",
    "compute_slices",
    "memory_slices",
    "memory_mib",
    "sm_count",
    "max_instances",
    "placements",
    "resource",
]
# Kubernetes label values: at most 63 characters, alphanumeric at both ends, [-_.] inside.
LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
# The name part of an extended resource is a qualified name: same character rules.
RESOURCE_NAME = re.compile(r"nvidia\.com/[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")

CATALOG = default_catalog()
ALL_PROFILES = [(m, p) for m in CATALOG for p in m.profiles]
ALL_PROFILE_IDS = [f"{m.key}:{p.name}" for m, p in ALL_PROFILES]


@functools.cache
def _yaml() -> dict:
    return yaml.safe_load((REFERENCE / "mig-profiles.yaml").read_text(encoding="utf-8"))


def _yaml_gpu(key: str) -> dict:
    return next(g for g in _yaml()["gpus"] if g["key"] == YAML_KEYS[key])


def _nvml(key: str) -> dict:
    text = (REFERENCE / "nvml" / NVML_FILES[key]).read_text(encoding="utf-8")
    return json.loads(text)["gpus"][0]


def _gfd_sanitise(driver_name: str) -> str:
    """GFD's product label rule: drop characters outside [A-Za-z0-9-_. ], spaces become '-'."""
    return "-".join(re.sub(r"[^A-Za-z0-9\-_. ]", "", driver_name).split())


def _model_json(key: str) -> dict:
    return next(m for m in CATALOG.to_json() if m["key"] == key)


def _sort_key(profile: Profile) -> tuple[int, int, int]:
    parsed = parse_profile_name(profile.name)
    return parsed.memory_gb, parsed.compute_slices, PROFILE_SUFFIXES.index(parsed.suffix)


# --- the shipped catalog ----------------------------------------------------------------------


def test_default_catalog_is_loaded_once_and_lists_every_model_in_order():
    assert default_catalog() is CATALOG
    assert isinstance(CATALOG, Catalog)
    assert [m.key for m in CATALOG] == list(DISPLAY_NAMES)
    assert len(CATALOG) == 11
    assert {m.key: m.display_name for m in CATALOG} == DISPLAY_NAMES
    assert "h100-80gb" in repr(CATALOG)


def test_to_json_has_exactly_the_cli_shape():
    data = CATALOG.to_json()
    assert json.loads(json.dumps(data)) == data
    for model in data:
        assert list(model) == MODEL_JSON_KEYS
        assert isinstance(model["products"], list)
        for profile in model["profiles"]:
            assert list(profile) == PROFILE_JSON_KEYS
            assert all(isinstance(p, list) and len(p) == 2 for p in profile["placements"])


def test_to_json_round_trips_through_load_catalog():
    again = load_catalog(CATALOG.to_json())
    assert again.to_json() == CATALOG.to_json()
    assert [m.profiles for m in again] == [m.profiles for m in CATALOG]


def test_data_file_is_what_to_json_prints_less_resource_plus_provenance():
    raw = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    for stored, printed in zip(raw, CATALOG.to_json(), strict=True):
        assert stored.pop("source") and stored.pop("confidence")
        for profile in printed["profiles"]:
            del profile["resource"]
        assert stored == printed  # also proves the file is stored in the canonical order


def test_every_model_keeps_its_provenance():
    for model in CATALOG:
        assert model.source.strip() and model.confidence.strip()
    assert "580.159.04" in CATALOG.model("h100-80gb").source
    assert "580.159.04" in CATALOG.model("h200-141gb").source


@pytest.mark.parametrize("model", CATALOG.models, ids=lambda m: m.key)
def test_profiles_are_sorted_smallest_first(model: GPUModel):
    assert list(model.profiles) == sorted(model.profiles, key=_sort_key)
    slices = [p.memory_slices for p in model.profiles if p.memory_slices is not None]
    assert slices == sorted(slices)
    assert model.profiles[0].name.startswith("1g.") and "+" not in model.profiles[0].name
    assert model.profiles[-1].compute_slices == model.compute_slices


def test_load_catalog_sorts_profiles_whatever_their_order_in_the_data():
    data = CATALOG.to_json()
    for model in data:
        model["profiles"].reverse()
    assert load_catalog(data).to_json() == CATALOG.to_json()


# --- hardware truth: NVML readings of a real H100 80GB HBM3 and H200 ---------------------------


@pytest.mark.parametrize("key", sorted(NVML_FILES))
def test_profiles_match_nvml_exactly(key: str):
    gpu = _nvml(key)
    expected = {}
    for row in gpu["gi_profiles"]:
        if "error" in row:
            continue
        sizes = {size for _, size in row["placements"]}
        assert len(sizes) == 1
        name = row["name"].removeprefix("MIG ")
        expected[name] = {
            "name": name,
            "gi_profile_id": row["id"],
            "compute_slices": row["sliceCount"],
            "memory_slices": sizes.pop(),
            "memory_mib": row["memorySizeMB"],
            "sm_count": row["multiprocessorCount"],
            "max_instances": row["instanceCount"],
            "placements": row["placements"],
            "resource": "nvidia.com/mig-" + name.replace("+", "."),
        }
    printed = {p["name"]: p for p in _model_json(key)["profiles"]}
    assert printed == expected
    assert len(expected) == 7


@pytest.mark.parametrize("key", sorted(NVML_FILES))
def test_whole_gpu_matches_nvml(key: str):
    gpu = _nvml(key)
    model = CATALOG.model(key)
    assert model.memory_mib == gpu["memory_total_bytes"] // 2**20
    assert gpu["memory_total_bytes"] % 2**20 == 0
    label = _gfd_sanitise(gpu["name"])
    assert model.products[0] == label
    assert CATALOG.model_for_product(label) is model
    assert CATALOG.model_for_product(gpu["name"]) is model  # the driver's own spelling
    full = model.profiles[-1]
    assert full.placements == ((0, model.memory_slices),)


def test_nvml_beats_the_yaml_for_h200_memory():
    """The YAML's H200 GiB (an older -lgip) differs; the catalog follows the hardware."""
    yaml_gib = {p["name"]: p["mem_gib_lgip"] for p in _yaml_gpu("h200-141gb")["profiles"]}
    h200 = CATALOG.model("h200-141gb")
    assert yaml_gib["1g.35gb"] == 32.25 and h200.profile("1g.35gb").memory_mib == 33280
    assert yaml_gib["7g.141gb"] == 139.75 and h200.profile("7g.141gb").memory_mib == 143360


# --- cross-check with mig-profiles.yaml ----------------------------------------------------------


@pytest.mark.parametrize("model", CATALOG.models, ids=lambda m: m.key)
def test_profiles_agree_with_the_reference_yaml(model: GPUModel):
    gpu = _yaml_gpu(model.key)
    assert (model.memory_slices, model.compute_slices) == (
        gpu["memory_slices"],
        gpu["compute_slices"],
    )
    assert {p.name for p in model.profiles} == {p["name"] for p in gpu["profiles"]}
    for ref in gpu["profiles"]:
        profile = model.profile(ref["name"])
        assert profile.resource == ref["k8s_mixed_resource"]
        assert profile.gi_profile_id == ref["gi_profile_id"]
        assert profile.compute_slices == ref["compute_slices"]
        assert profile.memory_slices == ref["memory_slices"]
        assert profile.max_instances == ref["max_instances"]
        assert profile.sm_count == ref["sm_count"]
        placements = ref.get("placements")
        expected = [(s, placements["size"]) for s in placements["starts"]] if placements else []
        assert list(profile.placements) == expected
        if model.key in NVML_FILES:
            continue  # memory: NVML wins, checked above
        gib = ref["mem_gib_lgip"]
        if model.key == "rtx-pro-6000" and ref["name"] == "1g.24gb-me":
            # Only seen in another driver's listing (23.12 GiB for every 1g row there); the
            # catalog keeps one listing so that memory depends on memory slices alone.
            assert gib == 23.12
            gib = 23.62
        if gib is None:
            assert profile.memory_mib is None
        else:
            assert f"{profile.memory_mib / 1024:.2f}" == f"{gib:.2f}"


@pytest.mark.parametrize("model", CATALOG.models, ids=lambda m: m.key)
def test_products_agree_with_the_reference_yaml(model: GPUModel):
    gpu = _yaml_gpu(model.key)
    assert set(gpu["gfd_gpu_product"]) <= set(model.products)
    for driver_name in gpu["nvidia_smi_names"].values():
        driver_name = driver_name.split(" (")[0]
        assert CATALOG.model_for_product(driver_name) is model
        assert CATALOG.model_for_product(_gfd_sanitise(driver_name)) is model
    for example in gpu.get("gfd_single_strategy_product_examples", []):
        label = example.split(" (")[0]
        assert CATALOG.model_for_product(label) is model
        product, _, profile = label.partition("-MIG-")
        if product == model.products[0]:
            assert model.single_strategy_product(profile) == label
    whole = gpu.get("gfd_gpu_memory_full_gpu_mib")
    if model.key == "gb200":
        # 196608 MiB = 192 GiB would make go-nvlib name the full profile 7g.192gb, not 7g.186gb.
        assert whole == 196608 and math.ceil(whole / 1024) != model.profiles[-1].memory_gb
        assert model.memory_mib is None
    elif whole is not None:
        assert model.memory_mib == whole


# --- internal consistency of every model --------------------------------------------------------


def _round_half_up(value: float) -> int:
    return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@pytest.mark.parametrize("model", CATALOG.models, ids=lambda m: m.key)
def test_names_follow_the_go_nvlib_rule(model: GPUModel):
    full_gb = model.profiles[-1].memory_gb
    if model.memory_mib is not None:
        assert math.ceil(model.memory_mib / 1024) == full_gb
    for profile in model.profiles:
        fraction = profile.memory_slices / model.memory_slices
        assert profile.memory_gb == _round_half_up(fraction * full_gb), profile.name


@pytest.mark.parametrize("model", CATALOG.models, ids=lambda m: m.key)
def test_memory_depends_on_memory_slices_only(model: GPUModel):
    by_slices: dict[int, set[int]] = {}
    for profile in model.profiles:
        if profile.memory_mib is not None:
            by_slices.setdefault(profile.memory_slices, set()).add(profile.memory_mib)
            gib = profile.memory_mib / 1024
            assert 0.85 * profile.memory_gb <= gib <= profile.memory_gb, profile.name
            assert model.memory_mib is None or profile.memory_mib <= model.memory_mib
    assert all(len(values) == 1 for values in by_slices.values())
    ordered = [by_slices[s].pop() for s in sorted(by_slices)]
    assert ordered == sorted(set(ordered))


@pytest.mark.parametrize("model", CATALOG.models, ids=lambda m: m.key)
def test_geometry_is_consistent(model: GPUModel):
    assert (model.memory_slices, model.compute_slices) in {(8, 7), (4, 4)}
    full = [p for p in model.profiles if p.compute_slices == model.compute_slices]
    assert full[0].name == f"{model.compute_slices}g.{full[0].memory_gb}gb"
    assert full[0].memory_slices == model.memory_slices and full[0].max_instances == 1
    plain_1g = model.profiles[0]
    assert plain_1g.max_instances == model.compute_slices and plain_1g.memory_slices == 1
    for profile in model.profiles:
        count = profile.max_instances
        assert count * profile.compute_slices <= model.compute_slices
        assert count * profile.memory_slices <= model.memory_slices
        for start, size in profile.placements:
            assert size == profile.memory_slices and start % size == 0
            assert start + size <= model.memory_slices
        assert not profile.placements or count <= len(profile.placements)
    sms = {}
    for profile in model.profiles:
        if profile.sm_count is not None and "+" not in profile.name:
            sms.setdefault(profile.compute_slices, set()).add(profile.sm_count)
    assert [min(sms[c]) for c in sorted(sms)] == sorted(min(v) for v in sms.values())


def test_profile_ids_belong_to_a_gpu_not_a_name():
    assert CATALOG.model("a100-40gb").profile("1g.10gb").gi_profile_id == 15
    assert CATALOG.model("a100-80gb").profile("1g.10gb").gi_profile_id == 19
    assert CATALOG.model("h100-80gb").profile("1g.10gb").gi_profile_id == 19
    assert CATALOG.model("h100-94gb").profile("1g.24gb").gi_profile_id == 15
    assert CATALOG.model("rtx-pro-6000").profile("1g.24gb").gi_profile_id == 14
    assert CATALOG.model("a30").profile("1g.6gb+me").gi_profile_id == 21


def test_unknown_values_are_null_not_guessed():
    gh200 = CATALOG.model("gh200-144gb")
    assert [p.gi_profile_id for p in gh200.profiles[-3:]] == [None, None, None]
    assert all(p.placements == () for p in CATALOG.model("rtx-pro-6000").profiles)
    b200_7g = CATALOG.model("b200").profile("7g.180gb")
    assert (b200_7g.memory_mib, b200_7g.sm_count) == (None, None)


# --- resource names --------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "profile"), ALL_PROFILES, ids=ALL_PROFILE_IDS)
def test_resource_names(model: GPUModel, profile: Profile):
    assert profile.resource == MIG_RESOURCE_PREFIX + profile.k8s_name
    assert RESOURCE_NAME.fullmatch(profile.resource) and "+" not in profile.resource
    assert profile_from_resource(profile.resource) == profile.k8s_name
    assert resource_for_profile(profile.name) == profile.resource
    assert resource_for_profile(profile.k8s_name) == profile.resource
    assert model.profile(profile.k8s_name) is profile
    assert model.profile(f"MIG {profile.name}") is profile


@pytest.mark.parametrize(
    ("name", "resource"),
    [
        ("1g.10gb", "nvidia.com/mig-1g.10gb"),
        ("1g.10gb+me", "nvidia.com/mig-1g.10gb.me"),
        ("1g.10gb.me", "nvidia.com/mig-1g.10gb.me"),
        ("MIG 1g.10gb+me", "nvidia.com/mig-1g.10gb.me"),
        ("1g.24gb+me.all", "nvidia.com/mig-1g.24gb.me.all"),
        ("1g.24gb.me.all", "nvidia.com/mig-1g.24gb.me.all"),
        ("1g.24gb+gfx", "nvidia.com/mig-1g.24gb.gfx"),
        ("1g.24gb-me", "nvidia.com/mig-1g.24gb-me"),
        ("7g.141gb", "nvidia.com/mig-7g.141gb"),
    ],
)
def test_resource_for_profile(name: str, resource: str):
    assert resource_for_profile(name) == resource


@pytest.mark.parametrize(
    "resource",
    [
        WHOLE_GPU_RESOURCE,
        "nvidia.com/mig-",
        "nvidia.com/mig-1g.10gb+me",  # not how the device plugin spells it
        "nvidia.com/mig-MIG 1g.10gb",
        "nvidia.com/mig-1c.3g.20gb",
        "nvidia.com/mig-1g.10gb.memory",
        "amd.com/gpu",
        "cpu",
        "",
        None,
    ],
)
def test_profile_from_resource_rejects_everything_else(resource):
    assert profile_from_resource(resource) is None


# --- parsing profile names -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1g.10gb", ProfileName(1, 10, "")),
        ("1g.10gb+me", ProfileName(1, 10, "+me")),
        ("1g.10gb.me", ProfileName(1, 10, "+me")),
        ("1g.24gb.me.all", ProfileName(1, 24, "+me.all")),
        ("1g.24gb+me.all", ProfileName(1, 24, "+me.all")),
        ("1g.24gb-me", ProfileName(1, 24, "-me")),
        ("1g.24gb+gfx", ProfileName(1, 24, "+gfx")),
        ("2g.48gb.gfx", ProfileName(2, 48, "+gfx")),
        ("MIG 1g.10gb", ProfileName(1, 10, "")),
        ("MIG 7g.141gb", ProfileName(7, 141, "")),
    ],
)
def test_parse_profile_name(name: str, expected: ProfileName):
    parsed = parse_profile_name(name)
    assert parsed == expected
    assert parsed.name == str(parsed) == expected.name


def test_profile_name_forms():
    assert ProfileName(1, 10, "+me").name == "1g.10gb+me"
    assert ProfileName(1, 10, "+me").k8s_name == "1g.10gb.me"
    assert ProfileName(1, 24, "+me.all").k8s_name == "1g.24gb.me.all"
    assert ProfileName(1, 24, "-me").k8s_name == "1g.24gb-me"
    assert ProfileName(3, 40).name == "3g.40gb"


@pytest.mark.parametrize(
    "name",
    [
        "gpu",
        "",
        " ",
        "0g.1gb",
        "8g.10gb",
        "10g.10gb",
        "1g.0gb",
        "1g.010gb",
        "1g.10",
        "1g10gb",
        "g.10gb",
        "1g.10gb+",
        "1g.10gb+foo",
        "1g.10gb-gfx",
        "1g.10gb-me.all",
        "1g.10gb.me+",
        "1G.10GB",
        " 1g.10gb",
        "1g.10gb ",
        "mig 1g.10gb",
        "MIG-1g.10gb",
        "nvidia.com/mig-1g.10gb",
        "1g.10gb\n",
        None,
        10,
    ],
)
def test_parse_profile_name_rejects(name):
    with pytest.raises(ValueError, match=r"^not a MIG profile name: ") as info:
        parse_profile_name(name)
    assert repr(name) in str(info.value)


@pytest.mark.parametrize("name", ["1c.3g.20gb", "2c.7g.80gb", "MIG 1c.2g.20gb", "1c.1g.24gb+gfx"])
def test_compute_instance_names_are_rejected_with_a_reason(name: str):
    with pytest.raises(ValueError, match=r"not a MIG profile name: .*compute-instance profile"):
        parse_profile_name(name)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10, ""), "compute_slices"),
        ((8, 10, ""), "compute_slices"),
        ((True, 10, ""), "compute_slices"),
        ((1, 0, ""), "memory_gb"),
        ((1, 10.0, ""), "memory_gb"),
        ((1, 10, ".me"), "suffix"),
        ((1, 10, "+ME"), "suffix"),
    ],
)
def test_profile_name_validates_its_fields(args, message: str):
    with pytest.raises(ValueError, match=message):
        ProfileName(*args)


profile_names = st.builds(
    ProfileName,
    st.integers(1, 7),
    st.integers(1, 999_999),
    st.sampled_from(PROFILE_SUFFIXES),
)


@given(profile_names)
def test_every_spelling_parses_back_to_the_same_name(name: ProfileName):
    assert parse_profile_name(name.name) == name
    assert parse_profile_name(name.k8s_name) == name
    assert parse_profile_name(f"MIG {name.name}") == name
    assert "+" not in name.k8s_name
    assert name.k8s_name == name.name or name.suffix.startswith("+")
    resource = resource_for_profile(name.name)
    assert resource == MIG_RESOURCE_PREFIX + name.k8s_name
    assert profile_from_resource(resource) == name.k8s_name
    assert parse_profile_name(profile_from_resource(resource)) == name


@given(
    st.one_of(
        st.text(max_size=30),
        st.from_regex(r"(MIG )?[0-9]{1,3}g\.[0-9]{1,4}gb([+.\-][a-z.]{0,7})?", fullmatch=True),
    )
)
def test_parser_accepts_only_exact_spellings(text: str):
    try:
        parsed = parse_profile_name(text)
    except ValueError as exc:
        assert str(exc).startswith("not a MIG profile name: ")
        return
    assert text in {parsed.name, parsed.k8s_name, f"MIG {parsed.name}", f"MIG {parsed.k8s_name}"}


@given(st.text(max_size=40))
def test_profile_from_resource_never_raises(text: str):
    for candidate in (text, MIG_RESOURCE_PREFIX + text):
        result = profile_from_resource(candidate)
        assert result is None or candidate == MIG_RESOURCE_PREFIX + result


# --- models and product lookup ---------------------------------------------------------------


def test_model_lookup_by_key():
    assert CATALOG.model("h100-80gb").display_name == "H100 80GB"
    with pytest.raises(KeyError, match=r"unknown GPU model key 'h100'.*h100-80gb"):
        CATALOG.model("h100")
    with pytest.raises(KeyError, match="unknown GPU model key"):
        CATALOG.model(None)


def test_model_profile_lookup():
    h100 = CATALOG.model("h100-80gb")
    me = h100.profile("1g.10gb+me")
    assert me is not None and me.gi_profile_id == 20
    assert h100.profile("1g.10gb.me") is me and h100.profile("MIG 1g.10gb+me") is me
    assert me.k8s_name == "1g.10gb.me" and me.memory_gb == 10
    assert h100.profile("1g.5gb") is None  # an A100-40GB profile
    assert h100.profile("1g.10gb-me") is None
    assert h100.profile("not a profile") is None
    assert h100.profile("1c.3g.40gb") is None


@pytest.mark.parametrize(
    ("key", "profile", "label"),
    [
        ("h100-80gb", "1g.10gb", "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"),
        ("h100-80gb", "3g.40gb", "NVIDIA-H100-80GB-HBM3-MIG-3g.40gb"),
        ("h100-80gb", "1g.10gb+me", "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb.me"),
        ("h100-80gb", "1g.10gb.me", "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb.me"),
        ("a100-40gb", "1g.5gb", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"),
        ("h200-141gb", "7g.141gb", "NVIDIA-H200-MIG-7g.141gb"),
        (
            "rtx-pro-6000",
            "1g.24gb+me.all",
            "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition-MIG-1g.24gb.me.all",
        ),
        (
            "rtx-pro-6000",
            "2g.48gb-me",
            "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition-MIG-2g.48gb-me",
        ),
    ],
)
def test_single_strategy_product(key: str, profile: str, label: str):
    model = CATALOG.model(key)
    assert model.single_strategy_product(profile) == label
    assert CATALOG.model_for_product(label) is model


@pytest.mark.parametrize(("model", "profile"), ALL_PROFILES, ids=ALL_PROFILE_IDS)
def test_single_strategy_products_are_valid_label_values(model: GPUModel, profile: Profile):
    label = model.single_strategy_product(profile.name)
    assert LABEL_VALUE.fullmatch(label) and len(label) <= 63 and "+" not in label
    assert CATALOG.model_for_product(label) is model
    assert CATALOG.model_for_product(label + "-SHARED") is model


def test_single_strategy_product_rejects_a_profile_the_model_lacks():
    with pytest.raises(ValueError, match=r"H100 80GB has no MIG profile '1g\.5gb'"):
        CATALOG.model("h100-80gb").single_strategy_product("1g.5gb")


def test_products_are_unique_valid_label_values():
    seen: set[str] = set()
    for model in CATALOG:
        assert model.products
        for product in model.products:
            assert LABEL_VALUE.fullmatch(product) and product.casefold() not in seen
            seen.add(product.casefold())
            assert CATALOG.model_for_product(product) is model
    assert CATALOG.model("a100-40gb").products == (
        "NVIDIA-A100-SXM4-40GB",
        "NVIDIA-A100-PCIE-40GB",
        "A100-SXM4-40GB",
    )


@pytest.mark.parametrize(
    ("product", "key"),
    [
        ("NVIDIA-H100-80GB-HBM3", "h100-80gb"),
        ("NVIDIA-H100-PCIe", "h100-80gb"),
        ("NVIDIA-H100-80GB-HBM3-MIG-1g.10gb", "h100-80gb"),
        ("NVIDIA-H100-80GB-HBM3-MIG-1g.10gb.me", "h100-80gb"),
        ("NVIDIA-H100-80GB-HBM3-MIG-INVALID", "h100-80gb"),
        ("NVIDIA-H100-80GB-HBM3-SHARED", "h100-80gb"),
        ("NVIDIA-H100-80GB-HBM3-MIG-3g.40gb-SHARED", "h100-80gb"),
        ("nvidia-h100-80gb-hbm3", "h100-80gb"),
        ("H100-80GB-HBM3", "h100-80gb"),
        ("NVIDIA H100 80GB HBM3", "h100-80gb"),
        ("A100-SXM4-40GB", "a100-40gb"),
        ("A100-SXM4-40GB-MIG-1g.5gb", "a100-40gb"),
        ("A100-PCIE-40GB", "a100-40gb"),
        ("NVIDIA-A100-80GB-PCIe-MIG-1g.10gb", "a100-80gb"),
        ("NVIDIA-A30", "a30"),
        ("NVIDIA-H100-NVL", "h100-94gb"),
        ("NVIDIA-GH200-480GB", "h100-96gb"),
        ("NVIDIA-H200", "h200-141gb"),
        ("NVIDIA-H200-NVL", "h200-141gb"),
        ("NVIDIA-H200-MIG-7g.141gb", "h200-141gb"),
        ("NVIDIA-GH200-144G-HBM3e", "gh200-144gb"),
        ("NVIDIA-B200", "b200"),
        ("NVIDIA-GB200", "gb200"),
        ("NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition-MIG-2g.48gb", "rtx-pro-6000"),
        ("NVIDIA-RTX-PRO-6000-Blackwell-Max-Q-Workstation-Edition", "rtx-pro-6000"),
    ],
)
def test_model_for_product(product: str, key: str):
    assert CATALOG.model_for_product(product) is CATALOG.model(key)


@pytest.mark.parametrize(
    "product",
    [
        None,
        "",
        "   ",
        "NVIDIA-L40S",
        "Tesla-T4",
        "NVIDIA-H100",
        "NVIDIA-H100-80GB",
        "NVIDIA-H100-80GB-HBM3-EXTRA",
        "MIG-1g.10gb",
        "NVIDIA-MIG-1g.10gb",
        "NVIDIA-",
        "-MIG-",
        "NVIDIA-NVIDIA-H200",
        "NVIDIA-B300",
    ],
)
def test_unknown_products(product):
    assert CATALOG.model_for_product(product) is None


gfd_labels = st.tuples(
    st.sampled_from(ALL_PROFILES),
    st.integers(0, len(max((m.products for m in CATALOG), key=len)) - 1),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from([str.upper, str.lower, str, str.swapcase]),
)


@given(gfd_labels)
def test_any_gfd_spelling_of_a_known_product_finds_its_model(case):
    (model, profile), index, single, shared, old_driver, recase = case
    label = model.products[index % len(model.products)]
    if old_driver:
        label = label.removeprefix("NVIDIA-")
    if single:
        label += f"-MIG-{profile.k8s_name}"
    if shared:
        label += "-SHARED"
    assert CATALOG.model_for_product(recase(label)) is model
    assert short_gpu_name(recase(label)) == model.display_name


@pytest.mark.parametrize(
    ("product", "name"),
    [
        ("NVIDIA-H100-80GB-HBM3", "H100 80GB"),
        ("NVIDIA-H100-PCIe", "H100 80GB"),
        ("NVIDIA-H100-80GB-HBM3-MIG-1g.10gb", "H100 80GB"),
        ("A100-SXM4-40GB-MIG-1g.5gb", "A100 40GB"),
        ("NVIDIA-GH200-480GB", "GH200 96GB"),
        ("NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition", "RTX PRO 6000 Blackwell"),
        ("NVIDIA-L40S", "L40S"),
        ("NVIDIA-L40S-SHARED", "L40S"),
        ("Tesla-T4", "Tesla T4"),
        ("NVIDIA-B300-SXM6-AC-MIG-1g.34gb", "B300 SXM6 AC"),
        ("nvidia-rtx-a6000", "rtx a6000"),
        (None, "unknown GPU"),
        ("", "unknown GPU"),
        ("NVIDIA-", "NVIDIA-"),
    ],
)
def test_short_gpu_name(product, name: str):
    assert short_gpu_name(product) == name


def test_short_gpu_name_uses_the_given_catalog():
    only_a30 = load_catalog([_model_json("a30")])
    assert short_gpu_name("NVIDIA-A30", only_a30) == "A30"
    assert short_gpu_name("NVIDIA-H100-80GB-HBM3", only_a30) == "H100 80GB HBM3"


# --- load_catalog validation -----------------------------------------------------------------


def _h100() -> dict:
    return copy.deepcopy(_model_json("h100-80gb"))


def _mutated(mutate) -> list:
    model = _h100()
    result = mutate(model)
    return result if result is not None else [model]


def _profile(model: dict, name: str) -> dict:
    return next(p for p in model["profiles"] if p["name"] == name)


def _set(field: str, value, profile: str | None = None):
    def mutate(model: dict) -> None:
        (_profile(model, profile) if profile else model)[field] = value

    return mutate


MALFORMED = [
    ("not a list", lambda m: {"models": [m]}, r"^catalog: expected a non-empty list"),
    ("empty", lambda m: [], r"^catalog: expected a non-empty list"),
    ("model not an object", lambda m: ["h100"], r"catalog\[0\]: expected an object, got str"),
    ("missing field", lambda m: m.pop("products") and None, r"catalog\[0\]: missing products"),
    ("unknown field", _set("colour", "green"), r"catalog\[0\]: unknown field\(s\) colour"),
    ("bad key", _set("key", "H100 80GB"), r"key 'H100 80GB' is not lower-case"),
    ("empty display name", _set("display_name", ""), r"display_name: bad string ''"),
    ("no products", _set("products", []), r"\(h100-80gb\): products: a non-empty list"),
    ("product with space", _set("products", ["NVIDIA H100"]), r"bad product label"),
    ("zero slices", _set("memory_slices", 0), r"memory_slices must be an integer >= 1, got 0"),
    ("bool slices", _set("compute_slices", True), r"compute_slices must be an integer"),
    ("compute > memory", _set("compute_slices", 9), r"compute > memory slices"),
    ("memory as text", _set("memory_mib", "80GB"), r"memory_mib must be null or an integer"),
    ("source not text", _set("source", 3), r"source/confidence"),
    ("no profiles", _set("profiles", []), r"profiles: a non-empty list"),
    ("profile not object", _set("profiles", ["1g.10gb"]), r"profiles\[0\]: expected an object"),
    (
        "compute-instance profile",
        _set("name", profile="1g.20gb", value="1c.2g.20gb"),
        r"profiles\[2\]: not a MIG profile name: '1c.2g.20gb' \(a compute-instance",
    ),
    (
        "k8s spelling",
        _set("name", profile="1g.10gb+me", value="1g.10gb.me"),
        r"name '1g.10gb.me' is not in NVIDIA form '1g.10gb\+me'",
    ),
    (
        "compute disagrees with name",
        _set("compute_slices", profile="2g.20gb", value=3),
        r"\(2g.20gb\): compute_slices 3 disagrees with name",
    ),
    ("GPU too small", _set("compute_slices", 4), r"\(7g.80gb\): compute_slices 7 > the GPU's"),
    (
        "memory slices",
        _set("memory_slices", profile="7g.80gb", value=9),
        r"memory_slices > the GPU's",
    ),
    ("memory > GPU", _set("memory_mib", 40000), r"\(3g.40gb\): memory_mib > the GPU's"),
    (
        "negative id",
        _set("gi_profile_id", profile="1g.10gb", value=-1),
        r"gi_profile_id must be null or an",
    ),
    (
        "zero SMs",
        _set("sm_count", profile="1g.10gb", value=0),
        r"sm_count must be null or an integer >= 1",
    ),
    (
        "placements text",
        _set("placements", profile="1g.10gb", value="0:1"),
        r"placements must be a list",
    ),
    ("short placement", _set("placements", profile="1g.10gb", value=[[0]]), r"bad placement \[0\]"),
    (
        "outside the GPU",
        _set("placements", profile="1g.10gb", value=[[8, 1]]),
        r"bad placement \[8, 1\]",
    ),
    (
        "wrong size",
        _set("placements", profile="1g.10gb", value=[[0, 2]]),
        r"bad placement \[0, 2\]",
    ),
    (
        "unsorted",
        _set("placements", profile="1g.10gb", value=[[1, 1], [0, 1]]),
        r"sorted and unique",
    ),
    (
        "duplicate",
        _set("placements", profile="1g.10gb", value=[[0, 1], [0, 1]]),
        r"sorted and unique",
    ),
    ("too many", _set("max_instances", profile="1g.10gb", value=8), r"max_instances > placements"),
    (
        "resource",
        _set("resource", profile="1g.10gb", value="nvidia.com/gpu"),
        r"resource must be 'nvidia",
    ),
    (
        "profile field",
        _set("engines", profile="1g.10gb", value=1),
        r"\[0\]: unknown field\(s\) engines",
    ),
    (
        "duplicate name",
        lambda m: m["profiles"].append(copy.deepcopy(m["profiles"][0])),
        r"profile names must be unique",
    ),
    (
        "duplicate id",
        _set("gi_profile_id", profile="2g.20gb", value=19),
        r"gi_profile_ids must be unique",
    ),
    ("duplicate key", lambda m: [m, copy.deepcopy(m)], r"duplicate GPU model key 'h100-80gb'"),
]


@pytest.mark.parametrize(
    ("mutate", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_load_catalog_rejects_malformed_data(mutate, message: str):
    with pytest.raises(ValueError, match=message):
        load_catalog(_mutated(mutate))


@pytest.mark.parametrize("product", ["nvidia-h100-80gb-hbm3", "H100-80GB-HBM3"])
def test_load_catalog_rejects_a_product_listed_under_two_models(product: str):
    h100, h200 = _h100(), copy.deepcopy(_model_json("h200-141gb"))
    h200["products"].append(product)
    with pytest.raises(ValueError, match=rf"'{product}' is listed twice \(h100-80gb, h200-141gb\)"):
        load_catalog([h100, h200])


def test_load_catalog_rejects_a_product_listed_twice_in_one_model():
    model = _h100()
    model["products"].append("nvidia-h100-pcie")
    with pytest.raises(ValueError, match=r"h100-80gb: a product is listed twice"):
        load_catalog([model])
    model["products"][-1] = "H100-PCIe"  # the old-driver form of a listed product is fine
    assert load_catalog([model]).model_for_product("H100-PCIe-MIG-1g.10gb").key == "h100-80gb"


def test_load_catalog_accepts_minimal_data_without_provenance_or_resource():
    model = _h100()
    for profile in model["profiles"]:
        del profile["resource"]
    loaded = load_catalog([model]).model("h100-80gb")
    assert loaded.source == loaded.confidence == ""
    assert loaded == replace(CATALOG.model("h100-80gb"), source="", confidence="")


def test_catalog_module_is_pure():
    code = (
        "import sys, mig_spawner.core.catalog as c; c.default_catalog();"
        "bad = {'kubespawner', 'kubernetes_asyncio', 'aiohttp', 'tornado', 'jupyterhub'};"
        "print(sorted(bad & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
