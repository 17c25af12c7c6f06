"""A tier's reclaim rules: opt-in, checked at load with the key at fault named."""

from __future__ import annotations

import pytest

from mig_spawner.core.policy import ConfigError, build_policy
from mig_spawner.core.reclaimrules import DEFAULT_GRACE, ReclaimRules


def rules(value):
    return build_policy(tiers={"a": {"reclaim": value}}).tier("a").reclaim


def test_off_unless_asked_and_the_defaults():
    assert build_policy(tiers={"a": {}}).tier("a").reclaim is None
    assert rules(None) is None  # a Helm null is absent
    assert rules({"idle_after": 3600}) == ReclaimRules(3600.0, DEFAULT_GRACE, None)
    r = rules({"max_session": 28800, "grace": 0})
    assert (r.idle_after, r.grace, r.max_session, r.active) == (None, 0, 28800, True)


def test_rules_are_part_of_the_tier_value():
    one = build_policy(tiers={"a": {"reclaim": {"idle_after": 60}}}).tier("a")
    two = build_policy(tiers={"a": {"reclaim": {"idle_after": 61}}}).tier("a")
    assert one.fingerprint != two.fingerprint


@pytest.mark.parametrize(
    ("value", "message", "path_end"),
    [
        ([1], "reclaim must be a mapping like", "reclaim"),
        ({"grace": 5}, "reclaim needs idle_after or max_session", "reclaim"),
        ({"idle_after": 0}, "reclaim.idle_after must be above 0 seconds, not 0", "idle_after"),
        ({"idle_after": "1h"}, "idle_after must be a number of seconds, not '1h'", "idle_after"),
        ({"idle_after": True}, "idle_after must be a number of seconds", "idle_after"),
        ({"idle_after": 5, "grace": -1}, "grace must be 0 or more seconds, not -1", "grace"),
        ({"idle_after": 5, "idle": 1}, "unknown key(s) 'idle': use idle_after", "reclaim"),
        ({"max_session": float("inf")}, "max_session must be a number of seconds", "max_session"),
    ],
)
def test_bad_rules_name_the_tier_and_the_key(value, message, path_end):
    with pytest.raises(ConfigError) as raised:
        rules(value)
    assert message in str(raised.value)
    assert str(raised.value).startswith("MIGSpawner.tiers['a'].reclaim")
    assert raised.value.path[:3] == ("MIGSpawner", "tiers", "a")
    assert raised.value.path[-1] == path_end
