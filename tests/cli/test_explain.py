"""`mig-spawner explain`: the right decision on realistic cluster snapshots.

The snapshots (tests/cli/snapshots, made by generate.py) are `kubectl get nodes,pods -A
-o json` output; the config is tests/cli/configs/teams_config.py: teams vision (alice,
bob; 8 compute slices, 4 per user) and nlp (carol, dave, alice; 14 slices), interns
(erin) without a quota, default quota 1 slice / 1 server.
"""

from __future__ import annotations

import json

import pytest
from cli_helpers import (
    ROOT_CONFIG,
    TEAMS_CONFIG,
    cordon,
    drop,
    find,
    items_of,
    set_not_ready,
    snapshot,
)

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-40GB"
DECISION_KEYS = {
    "admitted",
    "code",
    "user",
    "tier",
    "team",
    "requested_profile",
    "granted_profile",
    "granted_resource",
    "granted_gpu",
    "node",
    "node_selector",
    "tolerations",
    "fallback",
    "quota",
    "kueue",  # Kueue mode: the ClusterQueue's room (None without it)
    "candidates",
    "message",
    "warnings",
}


def chain(out: dict) -> list[tuple]:
    return [
        (c["step"], c["profile"], c["gpu"], c["free"], c["total"], c["outcome"])
        for c in out["candidates"]
    ]


def without_batch_jobs(data: dict) -> dict:
    """The mixed snapshot without ml-batch's running sweep pods (5 × 1g.10gb)."""
    return drop(
        data,
        lambda i: (
            i["kind"] == "Pod"
            and i["metadata"]["namespace"] == "ml-batch"
            and i["status"]["phase"] == "Running"
        ),
    )


# ----------------------------------------------------------------------- mixed strategy


def test_mixed_cluster_grants_the_smallest_adequate_slice(explain, write_json):
    # alice and carol hold two of gke-lab-h100-a's seven 1g.10gb; the finished sweep pod
    # and the unscheduled 7g pod hold nothing.
    r = explain(
        write_json(without_batch_jobs(snapshot("mixed-h100"))), user="dave", tier="notebook"
    )
    assert r.code == 0, r.err
    out = r.json
    assert set(out) == DECISION_KEYS
    assert out["admitted"] is True and out["code"] == "admitted"
    assert (out["user"], out["tier"], out["team"]) == ("dave", "notebook", "nlp")
    assert (out["requested_profile"], out["granted_profile"]) == ("1g.10gb", "1g.10gb")
    assert out["granted_resource"] == "nvidia.com/mig-1g.10gb"
    assert out["granted_gpu"] == "H100 80GB"
    assert out["node"] == "gke-lab-h100-a" and out["fallback"] is False
    assert out["node_selector"] == {"nvidia.com/gpu.product": H100}
    assert chain(out) == [(0, "1g.10gb", "H100 80GB", 5, 7, "granted")]
    # nlp: carol's 1g notebook; the config charges the granted size.
    assert out["quota"] == {
        "unit": "compute_slices",
        "used": 1,
        "limit": 14,
        "needed": 1,
        "charge": "granted",
    }
    assert out["warnings"] == []
    assert out["message"].startswith("Starting on 1 × 1g.10gb · 10 GB · 16 SMs on H100 80GB.")


def test_fallback_to_a_larger_slice_when_the_requested_type_is_full(explain):
    # ml-batch's five sweep pods fill the rest of 1g.10gb: the notebook falls back to 2g.20gb.
    r = explain("mixed-h100", user="dave", tier="notebook")
    assert r.code == 0, r.err
    out = r.json
    assert out["admitted"] is True and out["fallback"] is True
    assert (out["requested_profile"], out["granted_profile"]) == ("1g.10gb", "2g.20gb")
    assert out["granted_resource"] == "nvidia.com/mig-2g.20gb"
    assert out["node"] == "gke-lab-h100-b"
    assert chain(out) == [
        (0, "1g.10gb", "H100 80GB", 0, 7, "full"),
        (1, "2g.20gb", "H100 80GB", 2, 2, "granted"),
    ]
    assert out["candidates"][0]["reason"] == "none free (0 of 7)"
    assert out["quota"]["needed"] == 2  # charged at the granted 2g
    assert "Starting on the larger 1 × 2g.20gb" in out["message"]
    assert "every 1g.10gb on H100 80GB is taken (0 of 7 free)" in out["message"]


def test_fallback_stops_at_max_fallback_steps_and_skips_other_teams_when_asked(explain):
    # training (3g, >= 40 GB, one step): bob holds the only 3g.40gb; 7g.80gb is one step up.
    out = explain("mixed-h100", user="dave", tier="training").json
    assert chain(out) == [
        (0, "3g.40gb", "H100 80GB", 0, 1, "full"),
        (1, "7g.80gb", "H100 80GB", 1, 1, "granted"),
    ]
    # The whole GPU on gke-lab-h100-c would be a second step: never reached, never listed.
    assert "whole-gpu" not in [c["profile"] for c in out["candidates"]]


def test_foreign_namespace_pods_take_capacity(explain, write_json):
    base = snapshot("mixed-h100")
    batch = [p for p in items_of(base, "Pod") if p["metadata"]["namespace"] == "ml-batch"]
    assert len(batch) == 6 and {p["status"]["phase"] for p in batch} == {"Running", "Succeeded"}
    with_jobs = explain("mixed-h100", user="dave", tier="notebook").json
    assert with_jobs["candidates"][0]["free"] == 0
    # The same snapshot with one sweep pod gone: exactly one 1g.10gb frees up.
    one_gone = drop(base, lambda i: i["metadata"]["name"].startswith("sweep-lr-0-"))
    out = explain(write_json(one_gone), user="dave", tier="notebook").json
    assert out["granted_profile"] == "1g.10gb" and out["fallback"] is False
    assert chain(out) == [(0, "1g.10gb", "H100 80GB", 1, 7, "granted")]


@pytest.mark.parametrize("disable", [cordon, set_not_ready], ids=["cordoned", "not-ready"])
def test_cordoned_or_unready_nodes_offer_nothing(explain, write_json, disable):
    data = without_batch_jobs(snapshot("mixed-h100"))
    disable(find(data, "Node", "gke-lab-h100-a"))
    out = explain(write_json(data), user="dave", tier="notebook").json
    # 1g.10gb lives only on the disabled node: the notebook falls back to 2g.20gb.
    assert out["granted_profile"] == "2g.20gb" and out["node"] == "gke-lab-h100-b"
    assert out["fallback"] is True
    first = out["candidates"][0]
    assert (first["profile"], first["free"], first["total"]) == ("1g.10gb", 0, 7)
    assert first["outcome"] == "unusable"
    why = "cordoned" if disable is cordon else "NotReady"
    assert first["reason"] == f"its node(s) are {why}"


def test_every_node_cordoned_is_a_capacity_refusal(explain, write_json):
    data = snapshot("mixed-h100")
    for node in items_of(data, "Node"):
        cordon(node)
    r = explain(write_json(data), user="dave", tier="notebook")
    assert r.code == 0
    out = r.json
    assert out["admitted"] is False and out["code"] == "capacity"
    assert {c["outcome"] for c in out["candidates"]} == {"unusable"}
    assert "its node(s) are cordoned" in out["message"]


# ----------------------------------------------------------------------- single strategy


def test_single_strategy_cluster(explain):
    out = explain("single-h100", user="alice", tier="notebook").json
    assert out["admitted"] and out["granted_profile"] == "1g.10gb" and not out["fallback"]
    assert out["granted_resource"] == "nvidia.com/gpu"
    assert out["node"] == "h100-single-1g"
    assert out["node_selector"] == {"nvidia.com/gpu.product": f"{H100}-MIG-1g.10gb"}
    assert chain(out) == [(0, "1g.10gb", "H100 80GB", 11, 14, "granted")]  # 3 tune pods

    out = explain("single-h100", user="alice", tier="training").json
    assert out["granted_profile"] == "3g.40gb" and out["node"] == "h100-single-3g"
    assert out["node_selector"] == {"nvidia.com/gpu.product": f"{H100}-MIG-3g.40gb"}
    assert chain(out) == [(0, "3g.40gb", "H100 80GB", 3, 4, "granted")]  # bob holds one
    assert out["quota"]["used"] == 3  # bob's 3g, read back from the pod's charge labels

    out = explain("single-h100", user="carol", tier="full").json
    assert out["granted_profile"] == "whole-gpu" and out["node"] == "h100-single-whole"
    assert out["granted_resource"] == "nvidia.com/gpu"
    assert out["node_selector"] == {"nvidia.com/gpu.product": H100}


# ----------------------------------------------------------------------- several GPU models


def test_multi_model_cluster_falls_back_across_models(explain):
    out = explain("multi-model", user="alice", tier="notebook").json
    # 1g.10gb exists on both models and is full on both: one step, two candidates.
    assert chain(out) == [
        (0, "1g.10gb", "A100 40GB", 0, 4, "full"),
        (0, "1g.10gb", "H100 80GB", 0, 7, "full"),
        (1, "2g.10gb", "A100 40GB", 1, 1, "granted"),
    ]
    assert out["fallback"] is True and out["granted_gpu"] == "A100 40GB"
    assert out["node"] == "a100-pool-1"
    assert out["node_selector"] == {"nvidia.com/gpu.product": A100}


def test_multi_model_cluster_skips_types_below_the_tier_minimum(explain):
    # training needs >= 40 GB: the A100's 3g.20gb is not in its chain, the H100's 3g.40gb is.
    out = explain("multi-model", user="alice", tier="training").json
    assert chain(out) == [(0, "3g.40gb", "H100 80GB", 2, 2, "granted")]
    assert out["node"] == "h100-pool-2"
    # No 7g anywhere: a decision (exit 0), not an error.
    r = explain("multi-model", user="alice", tier="full")
    assert r.code == 0
    assert r.json["code"] == "no-matching-gpu" and r.json["candidates"] == []
    assert "at least 40 GB" in r.json["message"]


# ----------------------------------------------------------------------- quotas and teams


def test_quota_refusal_is_a_decision_with_the_figures(explain):
    # vision holds alice's 1g and bob's 3g: 4 of 8; a 7g needs 7 more.
    r = explain("mixed-h100", user="alice", tier="full", extra=["--team", "vision"])
    assert r.code == 0
    out = r.json
    assert out["admitted"] is False and out["code"] == "quota"
    assert out["team"] == "vision" and out["granted_profile"] is None
    assert out["quota"] == {
        "unit": "compute_slices",
        "used": 4,
        "limit": 8,
        "needed": 7,
        "charge": "granted",
    }
    assert chain(out) == [
        (0, "7g.80gb", "H100 80GB", 1, 1, "quota"),
        (1, "whole-gpu", "H100 80GB", 1, 1, "fallback-disabled"),
    ]
    assert out["message"].startswith(
        "'7g full GPU' needs 7 compute slices (7g.80gb on H100 80GB); team vision's GPU quota "
        "has 4 of 8 compute slices in use (1 compute slice of them yours), 4 left."
    )
    # Stopping alice's 1g would leave 3 + 7 > 8: the message does not suggest it.
    assert "stop one of your servers" not in out["message"].lower()


def test_personal_default_quota_for_a_user_in_no_team(explain):
    # erin's only group (interns) has no quota: the default 1 slice applies, and the
    # fallback to 2g.20gb would cost 2.
    out = explain("mixed-h100", user="erin", tier="notebook").json
    assert out["code"] == "quota" and out["team"] is None
    assert out["quota"]["limit"] == 1 and out["quota"]["needed"] == 2
    assert "your personal GPU quota" in out["message"]


def test_groups_come_from_the_configs_load_groups(explain):
    # list form (nlp) and dict form (vision) of c.JupyterHub.load_groups
    assert explain("mixed-h100", user="carol", tier="notebook").json["team"] == "nlp"
    assert explain("mixed-h100", user="bob", tier="notebook").json["team"] == "vision"
    # alice is in vision and nlp: vision comes first in team_quotas and has room
    assert explain("mixed-h100", user="alice", tier="notebook").json["team"] == "vision"
    # the full tier is for vision and nlp only: erin (interns) and strangers are refused
    out = explain("mixed-h100", user="erin", tier="full").json
    assert out["code"] == "forbidden-tier"
    assert explain("mixed-h100", user="zed", tier="full").json["code"] == "forbidden-tier"
    assert explain("mixed-h100", user="dave", tier="full").json["admitted"] is True
    # carol already holds 1 of her 7 per-user slices in nlp: a 7g would make 8
    out = explain("mixed-h100", user="carol", tier="full").json
    assert out["code"] == "quota" and out["quota"]["unit"] == "per_user_compute_slices"


def test_groups_flag_overrides_the_config(explain):
    out = explain("mixed-h100", user="zed", tier="full", extra=["--groups", "nlp"]).json
    assert out["admitted"] and out["team"] == "nlp"
    out = explain("mixed-h100", user="carol", tier="full", extra=["--groups", ""]).json
    assert out["code"] == "forbidden-tier"  # explicitly in no group
    out = explain("mixed-h100", user="zed", tier="notebook", extra=["--groups", " nlp , x,"]).json
    assert out["team"] == "nlp"


def test_team_flag_for_a_user_in_two_teams(explain):
    # Without --team alice's 7g goes to nlp: vision has no room for 7 more slices.
    assert explain("mixed-h100", user="alice", tier="full").json["team"] == "nlp"
    out = explain("mixed-h100", user="alice", tier="notebook", extra=["--team", "nlp"]).json
    assert out["admitted"] and out["team"] == "nlp"
    assert out["quota"]["used"] == 1 and out["quota"]["limit"] == 14  # carol's 1g
    out = explain("mixed-h100", user="alice", tier="notebook", extra=["--team", "vision"]).json
    assert out["team"] == "vision" and out["quota"]["used"] == 4
    out = explain("mixed-h100", user="alice", tier="notebook", extra=["--team", "interns"]).json
    assert out["code"] == "not-in-team" and "you are not a member" in out["message"]
    out = explain("mixed-h100", user="erin", tier="notebook", extra=["--team", "interns"]).json
    assert out["code"] == "not-in-team" and "it has no GPU quota" in out["message"]


def test_unknown_tier_is_a_decision_not_an_error(explain):
    r = explain("mixed-h100", user="alice", tier="gigantic")
    assert r.code == 0 and r.err == ""
    out = r.json
    assert out["code"] == "unknown-tier" and out["admitted"] is False
    assert "notebook, training, full" in out["message"]


# ----------------------------------------------------------------------- output forms


def test_text_report_shows_tier_team_chain_verdict_and_message(cli):
    r = cli(
        "explain",
        "--cluster",
        "tests/cli/snapshots/mixed-h100.json",
        "--config",
        TEAMS_CONFIG,
        "--user",
        "dave",
        "--tier",
        "notebook",
    )
    assert r.code == 0 and r.err == ""
    lines = r.out.splitlines()
    assert lines[0].startswith("Tier:     notebook (1g notebook): 1g to 3g, >= 10 GB")
    assert "User:     dave (groups: nlp)" in lines
    assert "Team:     nlp" in lines
    assert "Chain walked:" in lines
    rows = [line.split() for line in lines[lines.index("Chain walked:") + 1 :][:3]]
    assert rows[0] == ["step", "profile", "GPU", "free/total", "outcome", "reason"]
    assert rows[1][:6] == ["0", "1g.10gb", "H100", "80GB", "0/7", "full"]
    assert rows[2][:6] == ["1", "2g.20gb", "H100", "80GB", "2/2", "granted"]
    verdict = next(line for line in lines if line.startswith("Verdict:"))
    assert "ADMITTED (fallback): 2g.20gb on H100 80GB (node gke-lab-h100-b)" in verdict
    assert "nvidia.com/mig-2g.20gb" in verdict
    assert any(line.startswith("Quota:    compute_slices: 1 used, limit 14") for line in lines)
    assert lines[-1].startswith("Message:  Starting on the larger 1 × 2g.20gb")


def test_text_report_of_a_refusal(cli):
    r = cli(
        "explain",
        "--cluster",
        "tests/cli/snapshots/mixed-h100.json",
        "--config",
        TEAMS_CONFIG,
        "--user",
        "alice",
        "--team",
        "vision",
        "--tier",
        "full",
    )
    assert r.code == 0
    assert "Verdict:  REFUSED (quota)" in r.out
    assert "Team:     vision" in r.out
    assert "7g.80gb" in r.out and "4 of 8 compute slices in use" in r.out


def test_explain_accepts_the_other_snapshot_shapes(explain, write_json):
    data = snapshot("multi-model")
    reference = explain("multi-model", user="alice", tier="notebook").json
    # a bare JSON list of the items
    assert explain(write_json(data["items"]), user="alice", tier="notebook").json == reference
    # NodeList straight from the API (items without kind) + PodList concatenated as a List
    nodes = [
        {k: v for k, v in n.items() if k not in ("kind", "apiVersion")}
        for n in items_of(data, "Node")
    ]
    node_list = {"apiVersion": "v1", "kind": "NodeList", "items": nodes, "metadata": {}}
    out = explain(write_json(node_list), user="alice", tier="notebook").json
    # Without pods, everything is free: the first 1g.10gb (A100 sorts first) is granted.
    assert out["granted_profile"] == "1g.10gb" and out["granted_gpu"] == "A100 40GB"
    assert out["candidates"][0]["free"] == 4


def test_root_jupyterhub_config_loads_and_decides(explain):
    from mig_spawner.cli.explain import groups_from_config, load_config, policy_from_config

    config = load_config(str(ROOT_CONFIG))
    policy = policy_from_config(config, source=str(ROOT_CONFIG))
    assert policy.tiers, "the example config defines tiers"
    assert config.JupyterHub.spawner_class == "mig"
    members = groups_from_config(config, "alice", source=str(ROOT_CONFIG))
    assert set(members) <= set(config.JupyterHub.load_groups)
    for slug in policy.tiers:
        r = explain("mixed-h100", user="alice", tier=slug, config=ROOT_CONFIG)
        assert r.code == 0, r.err
        out = r.json
        assert out["tier"] == slug and set(out) == DECISION_KEYS
        assert out["code"] in {"admitted", "capacity", "quota", "forbidden-tier", "no-matching-gpu"}
        json.dumps(out)


def test_lazy_config_values_and_caseless_charge(explain, write_config):
    # `.update()` on an unset setting gives traitlets' LazyConfigValue; JupyterHub resolves it.
    path = write_config(
        "c = get_config()\n"
        "c.MIGSpawner.tiers.update({'nb': {'compute_slices': 1, 'min_memory_gb': 10}})\n"
        "c.MIGSpawner.team_quotas.update({'nlp': {'compute_slices': 2}})\n"
        "c.JupyterHub.load_groups.update({'nlp': ['dave']})\n"
        "c.MIGSpawner.charge = 'Requested'\n"
    )
    out = explain("mixed-h100", user="dave", tier="nb", config=path).json
    # 1g.10gb is full; with charge=requested the 2g fallback costs the requested 1g.
    assert out["admitted"] and out["granted_profile"] == "2g.20gb" and out["team"] == "nlp"
    assert out["quota"]["charge"] == "requested" and out["quota"]["needed"] == 1


def test_explain_shows_the_node_that_keeps_a_pool_tier_servable(cli, write_json, write_config):
    # issue 20 item 9: gke-lab-h100-a is a labelled pool, gke-lab-h100-d an ordinary copy of
    # it; both have 7 free 1g.10gb. By name the open tier would take the pool's; it must not.
    data = drop(snapshot("mixed-h100"), lambda i: i["kind"] == "Pod")
    pool = find(data, "Node", "gke-lab-h100-a")
    other = json.loads(json.dumps(pool))
    other["metadata"]["name"] = other["metadata"]["labels"]["kubernetes.io/hostname"] = (
        "gke-lab-h100-d"
    )
    data["items"].append(other)
    pool["metadata"]["labels"]["example.com/pool"] = "research"
    config = write_config(
        "c = get_config()\n"
        "c.MIGSpawner.tiers = {\n"
        "    'open': {'compute_slices': 1, 'max_compute_slices': 1},\n"
        "    'pool': {'compute_slices': 1, 'node_selector': {'example.com/pool': 'research'}},\n"
        "}\n"
    )
    snap = write_json(data)
    args = ("explain", "--cluster", snap, "--config", config, "--user", "erin")
    out = cli(*args, "--tier", "open", "--json").json
    assert out["admitted"] and out["node"] == "gke-lab-h100-d"
    text = cli(*args, "--tier", "open").out
    assert "(node gke-lab-h100-d)" in text
    assert "Node:     gke-lab-h100-d: 1 of 2 tier(s) can use its 1g.10gb (open)" in text
    pool_out = cli(*args, "--tier", "pool").out
    assert "Node:     gke-lab-h100-a: 2 of 2 tier(s) can use its 1g.10gb (open, pool)" in pool_out
