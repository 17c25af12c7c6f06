"""Tier order and team precedence are data (``order``), so they survive Helm's sorted keys.

Helm's ``toYaml`` writes maps with their keys sorted: a values file's
``{notebook, training, full}`` reaches the hub as ``{full, notebook, training}``. These
tests feed the policy maps in both orders and check what the form, the team picker and
the default team would see.
"""

from __future__ import annotations

import pytest

from mig_spawner.core.policy import ConfigError, build_policy

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
