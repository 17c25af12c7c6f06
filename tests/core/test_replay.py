"""The replay: recorded demand through admission.admit on a (re-laid-out) cluster."""

from __future__ import annotations

from mig_spawner.core.catalog import default_catalog
from mig_spawner.core.demand import DemandRecord
from mig_spawner.core.layouts import Layout
from mig_spawner.core.policy import build_policy
from mig_spawner.core.replay import (
    Request,
    build_cluster,
    profile_policy,
    relayout_node,
    replay,
    to_requests,
)

H100 = default_catalog().model("h100-80gb")
PRODUCT = "NVIDIA-H100-80GB-HBM3"


def node(name="n1", layouts=(), gpus=1):
    base = {
        "metadata": {
            "name": name,
            "labels": {
                "nvidia.com/gpu.product": PRODUCT,
                "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/mig.strategy": "mixed",
                "team": "a",
            },
        },
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "allocatable": {"cpu": "8", "nvidia.com/mig-7g.80gb": "1"},
        },
    }
    return relayout_node(base, list(layouts), "test")


def test_relayout_replaces_mig_resources_and_keeps_the_rest():
    lay = Layout.of(H100, {"1g.10gb": 3, "4g.40gb": 1})
    out = node(layouts=[lay, lay], gpus=2)
    assert out["status"]["allocatable"] == {
        "cpu": "8",
        "nvidia.com/mig-1g.10gb": "6",
        "nvidia.com/mig-4g.40gb": "2",
    }
    assert out["status"]["capacity"]["nvidia.com/mig-1g.10gb"] == "6"
    labels = out["metadata"]["labels"]
    assert labels["nvidia.com/mig.config"] == "test" and labels["team"] == "a"
    assert labels["nvidia.com/mig.config.state"] == "success"
    assert labels["nvidia.com/mig-4g.40gb.count"] == "2"
    state = build_cluster([out])
    assert {k.profile: n for k, n in state.nodes["n1"].offers.items()} == {
        "1g.10gb": 6,
        "4g.40gb": 2,
    }


def reqs(*specs):
    return [Request(i, t, d, tier, f"u{i}", team) for i, (t, d, tier, team) in enumerate(specs)]


def test_capacity_refusals_and_waiting_with_patience():
    policy = profile_policy(["1g.10gb"])
    tier = "profile-1g_10gb"
    seven = Layout.of(H100, {"1g.10gb": 7})
    eight = reqs(*[(0, 10 + i, tier, None) for i in range(8)])
    r = replay(build_cluster([node(layouts=[seven])]), policy, eight)
    assert (r.served, r.refused, r.mean_wait_s) == (7, 1, 0)
    r = replay(build_cluster([node(layouts=[seven])]), policy, eight, patience_s=30)
    assert (r.served, r.refused) == (8, 0)
    assert sorted(r.waits)[-1] == 10  # the first departure, at t=10
    assert r.p90_wait_s == 10 and r.mean_wait_s == 10 / 8
    r = replay(build_cluster([node(layouts=[seven])]), policy, eight, patience_s=5)
    assert (r.served, r.refused) == (7, 1)  # gave up before anyone left


def test_fallback_and_quotas_are_the_hubs():
    policy = build_policy(
        tiers={"nb": {"display_name": "nb", "compute_slices": 1, "min_memory_gb": 10}},
        team_quotas={"vision": {"compute_slices": 3}},
    )
    lay = Layout.of(H100, {"1g.10gb": 1, "3g.40gb": 2})
    state = build_cluster([node(layouts=[lay])])
    r = replay(state, policy, reqs((0, 100, "nb", None), (1, 100, "nb", None)))
    assert (r.served, r.fallbacks) == (2, 1)
    assert r.granted[1][0] == "3g.40gb"
    state = build_cluster([node(layouts=[Layout.of(H100, {"1g.10gb": 7})])])
    r = replay(state, policy, reqs(*[(i, 100, "nb", "vision") for i in range(5)]))
    assert (r.served, r.refused) == (3, 2)  # the team's quota of 3 slices


def test_requests_from_records():
    recs = [
        DemandRecord(t=100, profile="1g.10gb", duration_s=60, tier="nb"),
        DemandRecord(t=110, profile="1g.10gb", duration_s=120, tier="nb"),
        DemandRecord(t=120, profile="1g.10gb", tier="nb", outcome="refused"),
        DemandRecord(t=130, profile="1g.10gb", tier="nb", outcome="abandoned"),
        DemandRecord(t=140, profile="2g.20gb", duration_s=5, tier="gone"),
    ]
    policy = build_policy(tiers={"nb": {"display_name": "nb"}})
    out = to_requests(recs, policy)
    assert [(r.t, r.duration_s) for r in out.requests] == [(0, 60), (10, 120), (20, 90)]
    assert out.left_out == {"abandoned": 1, "tier 'gone' not in the config": 1}
    synthetic = to_requests(recs, None)
    assert {r.tier for r in synthetic.requests} == {"profile-1g_10gb", "profile-2g_20gb"}
