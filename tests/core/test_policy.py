"""build_policy: the admin's settings, validated with errors that name the fix."""

from pathlib import Path

import pytest
from traitlets.config import Config

from mig_spawner.core.catalog import WHOLE_GPU
from mig_spawner.core.policy import ConfigError, Quota, build_policy

ROOT = Path(__file__).resolve().parents[2]


def root_example() -> Config:
    cfg = Config()
    exec((ROOT / "jupyterhub_config.py").read_text(), {"get_config": lambda: cfg})
    return cfg


def test_root_example_builds_and_keeps_order():
    c = root_example().MIGSpawner
    policy = build_policy(
        tiers=c.tiers, team_quotas=c.team_quotas, default_quota=c.default_quota, charge=c.charge
    )
    assert list(policy.tiers) == ["notebook", "training", "full"]
    notebook = policy.tiers["notebook"]
    assert (notebook.compute_slices, notebook.min_memory_gb, notebook.max_compute_slices) == (
        1,
        10,
        3,
    )
    assert notebook.default and notebook.fallback and notebook.max_fallback_steps == 2
    assert policy.tiers["full"].groups == {"vision", "nlp"}
    assert policy.team_quotas["vision"] == Quota(
        compute_slices=8, servers=6, per_user_compute_slices=4
    )
    assert policy.default_quota == Quota(compute_slices=1, servers=1)
    assert policy.teams_for({"nlp", "vision", "other"}) == ["vision", "nlp"]  # admin's order
    assert [t.slug for t in policy.visible_tiers(set())] == ["notebook", "training"]


def test_defaults_no_fallback_means_ceiling_is_the_minimum():
    policy = build_policy(tiers={"t": {"compute_slices": 3, "fallback": False}})
    tier = policy.tiers["t"]
    assert tier.max_compute_slices == 3 and tier.display_name == "t"
    assert policy.default_quota.unlimited and policy.charge == "granted"


def test_fallback_chain_normalises_profile_names():
    policy = build_policy(
        tiers={"t": {}}, fallback_chains={"t": ["1g.10gb+me", "2g.20gb", WHOLE_GPU]}
    )
    assert policy.tiers["t"].chain == ("1g.10gb.me", "2g.20gb", WHOLE_GPU)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"tiers": {}}, "non-empty mapping"),
        ({"tiers": {"t": {"compute_slice": 1}}}, "did you mean 'compute_slices'"),
        ({"tiers": {"t": {"compute_slices": "1"}}}, "compute_slices must be a whole number"),
        ({"tiers": {"t": {"compute_slices": 9}}}, "between 1 and 7"),
        (
            {"tiers": {"t": {"compute_slices": 3, "max_compute_slices": 2}}},
            "below its compute_slices",
        ),
        ({"tiers": {"t": {"min_memory_gb": -1}}}, "min_memory_gb must be >= 0"),
        ({"tiers": {"t": {"fallback": "yes"}}}, "fallback must be true or false"),
        ({"tiers": {"t": {"groups": "vision"}}}, "groups must be a list"),
        (
            {"tiers": {"a": {"default": True}, "b": {"default": True}}},
            "only one tier may be default",
        ),
        ({"tiers": {"bad slug!": {}}}, "tier slug"),
        ({"tiers": {"t": {"tolerations": [{"key": "x", "operator": "Maybe"}]}}}, "operator"),
        (
            {"tiers": {"t": {"kubespawner_override": {"extra_resource_limits": {}}}}},
            "may not set extra_resource_limits",
        ),
        ({"tiers": {"t": {}}, "fallback_chains": {"x": ["1g.10gb"]}}, "names no tier"),
        ({"tiers": {"t": {}}, "fallback_chains": {"t": ["big"]}}, "not a MIG profile name"),
        ({"tiers": {"t": {}}, "fallback_chains": {"t": "1g.10gb"}}, "non-empty list"),
        ({"tiers": {"t": {}}, "fallback_chains": {"t": ["1g.10gb", "1g.10gb"]}}, "twice"),
        ({"tiers": {"t": {}}, "team_quotas": {"v": {"slices": 8}}}, "unknown key 'slices'"),
        ({"tiers": {"t": {}}, "team_quotas": {"v": {"servers": -1}}}, "servers must be >= 0"),
        ({"tiers": {"t": {}}, "team_quotas": {"v": 8}}, "must be a mapping"),
        (
            {"tiers": {"t": {}}, "default_quota": {"memory_gb": "lots"}},
            "memory_gb must be a number",
        ),
        ({"tiers": {"t": {}}, "charge": "both"}, "charge must be 'granted' or 'requested'"),
    ],
)
def test_bad_config_gets_a_specific_error(kwargs, fragment):
    with pytest.raises(ConfigError) as err:
        build_policy(**kwargs)
    assert fragment in str(err.value)


def test_null_entries_are_removed_not_unlimited():
    """A Helm overlay removes an entry with null; a removed team gets the default quota."""
    policy = build_policy(
        tiers={"a": {}, "b": None},
        fallback_chains={"a": ["1g.10gb"], "b": None},
        team_quotas={"vision": None, "nlp": {"servers": 2}},
        default_quota={"servers": 1},
    )
    assert list(policy.tiers) == ["a"]
    assert list(policy.team_quotas) == ["nlp"]
    assert policy.teams_for({"vision"}) == []  # vision users are on the default quota
    assert policy.quota_for(None) == Quota(servers=1)
    with pytest.raises(ConfigError, match="non-empty"):
        build_policy(tiers={"a": None})


def test_a_helm_null_anywhere_inside_a_tier_or_quota_means_absent():
    """Helm overlays write `groups: null`; it used to refuse every spawn."""
    from mig_spawner.core.policy import build_policy

    policy = build_policy(
        tiers={
            "nb": {
                "display_name": "1g notebook",
                "groups": None,
                "description": None,
                "node_selector": {"pool": "gpu", "zone": None},
                "tolerations": [None, {"key": "nvidia.com/gpu", "operator": "Exists"}],
                "kubespawner_override": {"image": "x:1", "cpu_limit": None},
            }
        },
        team_quotas={"vision": {"compute_slices": None, "servers": 2}},
    )
    tier = policy.tiers["nb"]
    assert tier.groups == frozenset() and tier.visible_to(("anyone",))
    assert dict(tier.node_selector) == {"pool": "gpu"}
    assert [dict(t) for t in tier.tolerations] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    assert dict(tier.kubespawner_override) == {"image": "x:1"}
    quota = policy.quota_for("vision")
    assert quota.compute_slices is None and quota.servers == 2


# ----------------------------------------------------------------------------------------
# Tier order and team precedence are data (``order``), so they survive Helm's sorted keys.
#
# Helm's ``toYaml`` writes maps with their keys sorted: a values file's
# ``{notebook, training, full}`` reaches the hub as ``{full, notebook, training}``. These
# tests feed the policy maps in both orders and check what the form, the team picker and
# the default team would see.

TIERS = {
    "notebook": {"display_name": "1g", "order": 1},
    "training": {"display_name": "3g", "compute_slices": 3, "order": 2},
    "full": {"display_name": "7g", "compute_slices": 7, "order": 3},
}


TEAMS = {"vision": {"compute_slices": 8, "order": 1}, "nlp": {"compute_slices": 14, "order": 2}}


def sorted_keys(mapping):
    """What Helm's toYaml hands the hub: the same map with its keys sorted."""
    return {key: mapping[key] for key in sorted(mapping)}


def test_order_wins_over_map_key_order():
    for tiers, teams in ((TIERS, TEAMS), (sorted_keys(TIERS), sorted_keys(TEAMS))):
        policy = build_policy(tiers=tiers, team_quotas=teams)
        assert list(policy.tiers) == ["notebook", "training", "full"]
        assert [t.slug for t in policy.visible_tiers({"vision"})] == [
            "notebook",
            "training",
            "full",
        ]
        # a member of both teams is charged to vision first, whatever the key order
        assert policy.teams_for({"nlp", "vision"}) == ["vision", "nlp"]


def test_reversed_order_reverses_the_form_and_the_default_team():
    tiers = {slug: {**t, "order": -t["order"]} for slug, t in TIERS.items()}
    teams = {"vision": {"order": 20}, "nlp": {"order": 10}}
    policy = build_policy(tiers=tiers, team_quotas=teams)
    assert list(policy.tiers) == ["full", "training", "notebook"]
    assert policy.teams_for({"vision", "nlp"}) == ["nlp", "vision"]


def test_without_order_the_mapping_order_is_kept():
    """A Python jupyterhub_config.py keeps insertion order; that stays the rule there."""
    tiers = {slug: {k: v for k, v in t.items() if k != "order"} for slug, t in TIERS.items()}
    policy = build_policy(tiers=tiers, team_quotas={"vision": {}, "nlp": {}})
    assert list(policy.tiers) == ["notebook", "training", "full"]
    assert policy.teams_for({"nlp", "vision"}) == ["vision", "nlp"]


def test_a_null_order_is_absent():
    tiers = {slug: {**t, "order": None} for slug, t in TIERS.items()}
    assert list(build_policy(tiers=tiers).tiers) == ["notebook", "training", "full"]


def test_order_does_not_change_the_quota_limits():
    quota = build_policy(tiers=TIERS, team_quotas=TEAMS).quota_for("vision")
    assert quota.compute_slices == 8 and quota.memory_gb is None and not quota.unlimited


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        # an overlay added a tier without order to a base that orders its tiers
        (
            {"tiers": {**TIERS, "big": {"display_name": "big"}}},
            ["'big' has no order", "set order on every tier or on none"],
        ),
        (
            {"tiers": {"a": {"order": 1}, "b": {}, "c": {}}},
            ["'b', 'c' have no order, but 'a' does"],
        ),
        (
            {"tiers": {"a": {"order": 1}, "b": {"order": 1}}},
            ["'a' and 'b' both have order 1", "give each tier its own"],
        ),
        ({"tiers": {"a": {"order": "first"}}}, ["tiers['a'].order must be a whole number"]),
        ({"tiers": {"a": {"order": 1.5}}}, ["tiers['a'].order must be a whole number"]),
        ({"tiers": {"a": {"order": True}}}, ["tiers['a'].order must be a whole number"]),
        (
            {"tiers": TIERS, "team_quotas": {"vision": {"order": 1}, "nlp": {}}},
            ["team_quotas: 'nlp' has no order", "set order on every team or on none"],
        ),
        (
            {"tiers": TIERS, "team_quotas": {"vision": {"order": 2}, "nlp": {"order": 2}}},
            ["'vision' and 'nlp' both have order 2", "give each team its own"],
        ),
        (
            {"tiers": TIERS, "team_quotas": {"vision": {"ordr": 1}}},
            ["unknown key 'ordr'", "did you mean 'order'"],
        ),
        # a tier that is not a mapping keeps its own, more specific error
        ({"tiers": {"a": {"order": 1}, "b": 5}}, ["tiers['b'] must be a mapping"]),
    ],
)
def test_bad_order_gets_a_specific_error(kwargs, fragments):
    with pytest.raises(ConfigError) as err:
        build_policy(**kwargs)
    for fragment in fragments:
        assert fragment in str(err.value)


# ---------------------------------------------------------------- the waiting line


@pytest.mark.parametrize(
    "tiers, cap, match",
    [
        ({"t": {"max_wait": -1}}, 3600, r"MIGSpawner.tiers\['t'\].max_wait must be >= 0"),
        ({"t": {"max_wait": "10m"}}, 3600, r"MIGSpawner.tiers\['t'\].max_wait must be a number"),
        ({"t": {"max_wait": 7200}}, 3600, r"max_wait \(7200 s\) is above MIGSpawner.max_wait_cap"),
        ({"t": {}}, -5, r"MIGSpawner.max_wait_cap must be >= 0"),
    ],
)
def test_max_wait_is_validated_with_a_located_error(tiers, cap, match):
    with pytest.raises(ConfigError, match=match):
        build_policy(tiers=tiers, max_wait_cap=cap)


def test_max_wait_defaults_to_zero_and_the_cap_to_an_hour():
    policy = build_policy(tiers={"t": {}, "w": {"max_wait": 3600}})
    assert policy.tiers["t"].max_wait == 0 and policy.tiers["w"].max_wait == 3600
    assert policy.max_wait_cap == 3600
