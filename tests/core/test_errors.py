"""One validation vocabulary: InputError, with the path to the bad key and what was expected."""

from __future__ import annotations

import pytest

from mig_spawner.core.catalog import CatalogError, load_catalog, parse_profile_name
from mig_spawner.core.errors import InputError, format_path, leading_path, snippet
from mig_spawner.core.options import OptionsError, parse_options
from mig_spawner.core.policy import ConfigError, build_policy


def test_every_validator_raises_the_one_type_and_keeps_valueerror():
    for kind in (ConfigError, CatalogError, OptionsError):
        assert issubclass(kind, InputError) and issubclass(kind, ValueError)


def test_a_policy_error_carries_the_path_to_its_setting():
    with pytest.raises(ConfigError) as info:
        build_policy(tiers={"nb": {"compute_slices": 9}})
    e = info.value
    assert e.path[:3] == ("MIGSpawner", "tiers", "nb")
    assert str(e) == e.message  # no source yet: the message as it always read
    located = e.at("hub.py:4:7")
    assert type(located) is ConfigError and located.path == e.path
    assert str(located) == f"hub.py:4:7: {e.message}"


def test_a_catalog_error_carries_the_entry_path():
    with pytest.raises(CatalogError) as info:
        load_catalog([{"key": "x"}])
    assert info.value.path == ("catalog", 0)
    with pytest.raises(CatalogError, match="not a MIG profile name"):
        parse_profile_name("9g.99gb")


def test_options_errors_say_the_key_and_what_it_takes():
    profiles = [{"slug": "nb", "display_name": "NB"}]
    with pytest.raises(OptionsError) as info:
        parse_options({"profile": "nb", "extra_resource_limits": {"a": 1}}, profiles)
    assert info.value.path == ("user_options", "extra_resource_limits")
    assert "accepts no 'extra_resource_limits'" in str(info.value)
    with pytest.raises(OptionsError) as info:
        parse_options({"profile": ["nb"]}, profiles)
    assert info.value.expected == "a string" and "not list" in str(info.value)


def test_paths_and_snippets():
    assert leading_path("MIGSpawner.tiers['a b'].order must be") == (
        "MIGSpawner",
        "tiers",
        "a b",
        "order",
    )
    assert leading_path("MIGSpawner.fallback_chains['nb'][2]: x") == (
        "MIGSpawner",
        "fallback_chains",
        "nb",
        2,
    )
    assert leading_path("a tier slug must be letters") == ()
    assert leading_path("catalog[3].profiles[1]: bad", root="catalog") == (
        "catalog",
        3,
        "profiles",
        1,
    )
    assert format_path(("nodes", 2, "mig", 0, 1)) == "nodes[2].mig[0][1]"
    assert snippet("a: 1\nbb: [x\n", 2, 5) == "    2 | bb: [x\n      |     ^"
    assert snippet("a: 1\n", 9, 1) == ""
    e = InputError("bad", detail="    1 | x\n      | ^").at("f.yaml:1:1")
    assert str(e).splitlines() == ["f.yaml:1:1: bad", "    1 | x", "      | ^"]
