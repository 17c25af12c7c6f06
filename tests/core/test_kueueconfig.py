"""MIGSpawner.kueue: parsed, labels, and every bad value refused with a located error."""

import re

import pytest

from mig_spawner.core import kueueconfig as kueue
from mig_spawner.core.errors import ConfigError
from mig_spawner.core.policy import build_policy

TIERS = {"notebook": {"display_name": "1g notebook", "compute_slices": 1}}
KUEUE = {"local_queues": {"vision": "team-vision-lq"}, "default_local_queue": "shared-lq"}


# ---------------------------------------------------------------------- the setting


def test_settings_parse_and_labels():
    s = kueue.parse_settings({**KUEUE, "priority_class": "notebooks"})
    assert s.queue_for("vision") == "team-vision-lq"
    assert s.queue_for(None) == "shared-lq"
    assert s.labels("vision") == {
        kueue.QUEUE_LABEL: "team-vision-lq",
        kueue.PRIORITY_LABEL: "notebooks",
    }
    assert kueue.parse_settings({}) is None and kueue.parse_settings(None) is None
    no_default = kueue.parse_settings({"local_queues": {"vision": "a"}})
    assert no_default.queue_for(None) is None and no_default.labels(None) == {}


@pytest.mark.parametrize(
    "value, words, path",
    [
        ({"local_queue": {}}, "unknown key(s) 'local_queue'", ("MIGSpawner", "kueue")),
        (
            {"local_queues": {"vision": 3}},
            "must be a string",
            ("MIGSpawner", "kueue", "local_queues", "vision"),
        ),
        (
            {"local_queues": {"vision": "Team_Vision"}},
            "not a valid Kubernetes object name",
            ("MIGSpawner", "kueue", "local_queues", "vision"),
        ),
        (
            {"default_local_queue": "-x"},
            "not a valid Kubernetes object name",
            ("MIGSpawner", "kueue", "default_local_queue"),
        ),
        (
            {"local_queues": {"v": "a"}, "priority_class": "High"},
            "not a valid",
            ("MIGSpawner", "kueue", "priority_class"),
        ),
        (
            {"local_queues": ["a"]},
            "must map JupyterHub group names",
            ("MIGSpawner", "kueue", "local_queues"),
        ),
        ({"local_queues": {}}, "needs local_queues", ("MIGSpawner", "kueue")),
        ("team-vision", "must be a mapping", ("MIGSpawner", "kueue")),
    ],
)
def test_settings_refused_with_a_located_error(value, words, path):
    with pytest.raises(ConfigError) as e:
        build_policy(tiers=TIERS, kueue=value)
    assert words in str(e.value)
    assert e.value.path == path


def test_team_quotas_with_kueue_are_refused_naming_both():
    with pytest.raises(ConfigError) as e:
        build_policy(tiers=TIERS, team_quotas={"vision": {"compute_slices": 4}}, kueue=KUEUE)
    assert "MIGSpawner.team_quotas cannot be set with MIGSpawner.kueue" in str(e.value)
    assert e.value.path == ("MIGSpawner", "team_quotas")
    with pytest.raises(ConfigError, match=re.escape("MIGSpawner.default_quota cannot be set")):
        build_policy(tiers=TIERS, default_quota={"servers": 1}, kueue=KUEUE)


def test_kueue_teams_are_the_local_queues_keys_without_limits():
    policy = build_policy(tiers=TIERS, kueue={"local_queues": {"vision": "a", "nlp": "b"}})
    assert policy.teams_for({"nlp", "vision", "other"}) == ["vision", "nlp"]
    assert policy.quota_for("vision").unlimited
    assert policy != build_policy(tiers=TIERS, kueue={"local_queues": {"vision": "a", "nlp": "c"}})


@pytest.mark.parametrize("backend", ["dra", "DRA"])
def test_the_dra_backend_with_kueue_is_refused_at_load(backend):
    """Kueue 0.17 rejects claims with firstAvailable subrequests (its pkg/dra), which are
    the DRA backend's fallback: the hub must not start with both."""
    from mig_spawner.core.policy import policy_from_settings

    settings = {"tiers": TIERS, "kueue": {"local_queues": {"vision": "team-vision"}}}
    with pytest.raises(ConfigError, match=r"MIGSpawner\.backend 'dra' cannot be used with"):
        policy_from_settings({**settings, "backend": backend})
    policy = policy_from_settings({**settings, "backend": "device-plugin"})
    assert policy.kueue.local_queues == {"vision": "team-vision"}
    # without Kueue, the DRA backend is a valid policy
    assert policy_from_settings({"tiers": TIERS, "backend": "dra"}).kueue is None
