"""The admission decision on realistic clusters: mixed, single, multi-model, fallback, quota."""

import pytest
from k8s_factories import A100_40, H100, node, pod

from mig_spawner.core import admission as adm
from mig_spawner.core.admission import SpawnRequest, admit, availability, decide
from mig_spawner.core.cluster import ADDED, ClusterState
from mig_spawner.core.policy import build_policy

TIERS = {
    "notebook": {
        "display_name": "1g notebook",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "max_compute_slices": 3,
        "max_fallback_steps": 2,
        "default": True,
    },
    "training": {"display_name": "3g training", "compute_slices": 3, "min_memory_gb": 40},
    "full": {
        "display_name": "7g full GPU",
        "compute_slices": 7,
        "fallback": False,
        "groups": ["vision"],
    },
    "strict": {
        "display_name": "1g strict",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "fallback": False,
    },
}
QUOTAS = {"vision": {"compute_slices": 8}, "nlp": {"compute_slices": 4, "servers": 2}}


def make_state(*nodes, pods=()):
    state = ClusterState()
    for n in nodes:
        state.apply_node_event(ADDED, n)
    for p in pods:
        state.apply_pod_event(ADDED, p)
    return state


def policy(**kw):
    return build_policy(tiers=TIERS, team_quotas=kw.pop("team_quotas", QUOTAS), **kw)


def req(user="alice", tier="notebook", groups=("vision",), team=None):
    return SpawnRequest(user=user, tier=tier, groups=tuple(groups), team=team)


def fill(state, node_name, resource, n, prefix="busy"):
    for i in range(n):
        tag = resource.rsplit("-", 1)[-1].replace(".", "")
        state.apply_pod_event(
            ADDED,
            pod(
                f"{prefix}-{node_name}-{tag}-{i}",
                namespace="other",
                node=node_name,
                resources={resource: 1},
            ),
        )


def test_mixed_cluster_grants_the_smallest_adequate_slice():
    state = make_state(node("h1", mig=["1g.10gb"] * 7), node("h2", mig=["2g.20gb", "3g.40gb"]))
    d = decide(req(), policy(), state)
    assert d.admitted and d.code == adm.ADMITTED and not d.fallback
    assert (d.requested.profile, d.granted.profile) == ("1g.10gb", "1g.10gb")
    assert d.granted_resource if hasattr(d, "granted_resource") else True
    out = d.to_dict()
    assert out["granted_resource"] == "nvidia.com/mig-1g.10gb"
    assert out["node_selector"] == {"nvidia.com/gpu.product": H100}
    assert out["quota"] == {
        "unit": "compute_slices",
        "used": 0,
        "limit": 8,
        "needed": 1,
        "charge": "granted",
    }
    assert d.node == "h1" and d.team == "vision"
    assert "Starting on 1 × 1g.10gb · 10 GB · 16 SMs on H100 80GB" in d.message


def test_fallback_to_next_step_when_full_and_says_why():
    state = make_state(node("h1", mig=["1g.10gb"] * 2 + ["2g.20gb", "3g.40gb"]))
    fill(state, "h1", "nvidia.com/mig-1g.10gb", 2)
    d = decide(req(), policy(), state)
    assert d.admitted and d.fallback and d.granted.profile == "2g.20gb"
    assert d.candidates[0].outcome == adm.FULL and d.candidates[0].reason == "none free (0 of 2)"
    assert d.message.startswith(
        "Starting on the larger 1 × 2g.20gb · 20 GB · 32 SMs on H100 80GB: "
        "every 1g.10gb on H100 80GB is taken (0 of 2 free)."
    )
    fill(state, "h1", "nvidia.com/mig-2g.20gb", 1)
    d = decide(req(), policy(), state)
    assert d.granted.profile == "3g.40gb" and d.step == 2


def test_fallback_respects_ceiling_steps_and_disabled():
    state = make_state(node("h1", mig=["1g.10gb", "4g.40gb"], whole_gpus=1))
    fill(state, "h1", "nvidia.com/mig-1g.10gb", 1)
    # notebook's ceiling is 3g: 4g and the whole GPU are not in its chain at all.
    d = decide(req(), policy(), state)
    assert not d.admitted and d.code == adm.CAPACITY
    assert [c.slice_type.profile for c in d.candidates] == ["1g.10gb"]
    # strict never falls back
    # strict never falls back: its ceiling defaults to its minimum, so 2g is not in its chain
    state = make_state(node("h1", mig=["1g.10gb", "2g.20gb"]))
    fill(state, "h1", "nvidia.com/mig-1g.10gb", 1)
    d = decide(req(tier="strict"), policy(), state)
    assert not d.admitted and [c.outcome for c in d.candidates] == [adm.FULL]
    assert "does not fall back" in d.message
    # ... and with a ceiling set but fallback off, larger slices are listed and passed over
    pol = build_policy(tiers={"t": {"fallback": False, "max_compute_slices": 3}})
    d = decide(req(tier="t"), pol, state)
    assert [c.outcome for c in d.candidates] == [adm.FULL, adm.FALLBACK_DISABLED]


def test_max_fallback_steps():
    tiers = {"t": {"compute_slices": 1, "max_fallback_steps": 1}}
    state = make_state(node("h1", mig=["1g.10gb", "2g.20gb", "3g.40gb"]))
    fill(state, "h1", "nvidia.com/mig-1g.10gb", 1)
    fill(state, "h1", "nvidia.com/mig-2g.20gb", 1)
    d = decide(req(tier="t"), build_policy(tiers=tiers), state)
    assert not d.admitted
    assert [c.outcome for c in d.candidates] == [adm.FULL, adm.FULL, adm.BEYOND_MAX_STEPS]


def test_single_strategy_cluster():
    state = make_state(
        node("s1", strategy="single", mig=["1g.10gb"] * 7),
        node("s2", strategy="single", mig=["3g.40gb"] * 2),
        node("w1", strategy="single", whole_gpus=8),
    )
    d = decide(req(), policy(), state)
    assert d.granted.strategy == "single" and d.to_dict()["granted_resource"] == "nvidia.com/gpu"
    assert d.node_selector == {"nvidia.com/gpu.product": f"{H100}-MIG-1g.10gb"}
    full = decide(req(tier="full"), policy(), state)
    assert full.admitted and full.granted.is_whole_gpu and full.node == "w1"
    assert full.node_selector == {"nvidia.com/gpu.product": H100}


def test_multi_model_chain_orders_across_models():
    state = make_state(
        node("a100", A100_40, mig=["1g.5gb"] * 2 + ["2g.10gb", "3g.20gb"]),
        node("h100", mig=["1g.10gb"] * 3 + ["2g.20gb", "3g.40gb"]),
    )
    tier = policy().tiers["notebook"]
    chain = [(k.profile, k.gpu_name, total) for k, _, total in availability(state, tier)]
    # 1g.5gb is too small (min 10 GB); 1g.10gb (H100) before 2g.10gb (A100) before 2g.20gb.
    assert chain == [
        ("1g.10gb", "H100 80GB", 3),
        ("2g.10gb", "A100 40GB", 1),
        ("2g.20gb", "H100 80GB", 1),
        ("3g.20gb", "A100 40GB", 1),
        ("3g.40gb", "H100 80GB", 1),
    ]
    fill(state, "h100", "nvidia.com/mig-1g.10gb", 3)
    d = decide(req(), policy(), state)
    assert d.granted.profile == "2g.10gb" and d.node_selector == {"nvidia.com/gpu.product": A100_40}


def test_cordoned_and_notready_nodes_offer_nothing():
    state = make_state(
        node("c", mig=["1g.10gb"] * 7, unschedulable=True), node("n", mig=["2g.20gb"], ready=False)
    )
    d = decide(req(), policy(), state)
    assert not d.admitted and d.code == adm.CAPACITY
    assert [c.reason for c in d.candidates] == [
        "its node(s) are cordoned",
        "its node(s) are NotReady",
    ]


def test_tier_node_selector_and_tolerations_restrict_nodes():
    tiers = {
        "t": {
            "compute_slices": 1,
            "node_selector": {"pool": "research"},
            "tolerations": [{"key": "gpu", "operator": "Exists"}],
        }
    }
    state = make_state(
        node("plain", mig=["1g.10gb"] * 7),
        node(
            "research",
            mig=["2g.20gb"],
            labels={"pool": "research"},
            taints=[{"key": "gpu", "value": "x", "effect": "NoSchedule"}],
        ),
    )
    d = decide(req(tier="t"), build_policy(tiers=tiers), state)
    assert d.granted.profile == "2g.20gb" and d.node == "research" and not d.fallback
    assert d.node_selector == {"pool": "research", "nvidia.com/gpu.product": H100}
    assert d.to_dict()["tolerations"] == [{"key": "gpu", "operator": "Exists"}]


def test_foreign_namespace_pods_take_capacity():
    state = make_state(
        node("h", mig=["1g.10gb"]),
        pods=[
            pod("batch", namespace="research", node="h", resources={"nvidia.com/mig-1g.10gb": 1})
        ],
    )
    assert decide(req(tier="strict"), policy(), state).code == adm.CAPACITY


def test_quota_refusal_names_usage_and_own_servers():
    state = make_state(
        node("h", mig=["1g.10gb"] * 7 + ["3g.40gb"] * 2), node("h2", mig=["1g.10gb"] * 7)
    )
    pods = [
        pod(f"v{i}", node="h", resources={"nvidia.com/mig-1g.10gb": 1}, user="bob", team="vision")
        for i in range(6)
    ]
    pods.append(
        pod(
            "mine",
            node="h",
            resources={"nvidia.com/mig-1g.10gb": 1},
            user="alice",
            team="vision",
            server_name="scratch",
        )
    )
    for p in pods:
        state.apply_pod_event(ADDED, p)
    d = decide(req(tier="training"), policy(), state)
    assert not d.admitted and d.code == adm.QUOTA
    assert d.quota.to_dict("granted") == {
        "unit": "compute_slices",
        "used": 7,
        "limit": 8,
        "needed": 3,
        "charge": "granted",
    }
    assert d.message.startswith(
        "'3g training' needs 3 compute slices (3g.40gb on H100 80GB); team vision's GPU quota "
        "has 7 of 8 compute slices in use (1 compute slice of them yours), 1 left."
    )
    # Stopping alice's only server (1 slice) would leave 6 + 3 > 8: no such advice.
    assert "stop" not in d.message.replace("stops", "")
    ok = decide(req(), policy(), state)
    assert ok.admitted  # a 1g still fits


def test_charge_requested_vs_granted():
    state = make_state(node("h", mig=["1g.10gb", "2g.20gb"]))
    fill(state, "h", "nvidia.com/mig-1g.10gb", 1)
    tight = {"vision": {"compute_slices": 1}}
    granted = decide(req(), policy(team_quotas=tight), state)
    assert not granted.admitted and granted.code == adm.QUOTA  # the 2g would cost 2
    requested = decide(req(), policy(team_quotas=tight, charge="requested"), state)
    assert requested.admitted and requested.granted.profile == "2g.20gb"
    assert requested.charge.compute_slices == 1


def test_may_wait_when_full_or_when_only_a_larger_fallback_is_over_quota():
    state = make_state(node("h", mig=["1g.10gb", "2g.20gb"]))
    fill(state, "h", "nvidia.com/mig-1g.10gb", 1)
    tight = policy(team_quotas={"vision": {"compute_slices": 1}})
    # 1g taken, the 2g free but over the quota: a freed 1g would admit it (granted charge)
    d = decide(req(), tight, state)
    assert d.code == adm.QUOTA and adm.may_wait(d, req(), tight, state)
    assert adm.requested_quota(d, req(), tight, state).ok
    # the same with a quota of 0: no slice could ever be granted, waiting would not help
    none = policy(team_quotas={"vision": {"compute_slices": 0}})
    d = decide(req(), none, state)
    assert d.code == adm.QUOTA and not adm.may_wait(d, req(), none, state)
    assert not adm.requested_quota(d, req(), none, state).ok
    # charged as requested, the 2g costs 1 and is granted; a capacity refusal may wait
    fill(state, "h", "nvidia.com/mig-2g.20gb", 1)
    d = decide(req(), policy(), state)
    assert d.code == adm.CAPACITY and adm.may_wait(d, req(), policy(), state)
    # an unknown tier or an admission never waits
    unknown = decide(req(tier="nope"), policy(), state)
    assert not adm.may_wait(unknown, req(tier="nope"), policy(), state)
    assert adm.requested_quota(unknown, req(tier="nope"), policy(), state) is None


def test_requested_quota_is_the_requesting_teams_own():
    state = make_state(node("h", mig=["1g.10gb"] * 2))
    fill(state, "h", "nvidia.com/mig-1g.10gb", 2)
    p = policy(team_quotas={"vision": {"compute_slices": 8}, "nlp": {"compute_slices": 0}})
    vision = decide(req(groups=("vision",)), p, state)
    nlp = decide(req(user="carol", groups=("nlp",)), p, state)
    assert vision.code == nlp.code == adm.CAPACITY
    assert adm.requested_quota(vision, req(groups=("vision",)), p, state).ok
    assert not adm.requested_quota(nlp, req(user="carol", groups=("nlp",)), p, state).ok


def test_team_selection_explicit_and_first_with_room():
    state = make_state(node("h", mig=["1g.10gb"] * 7))
    for i in range(4):
        state.apply_pod_event(
            ADDED,
            pod(f"n{i}", node="h", resources={"nvidia.com/mig-1g.10gb": 1}, user="x", team="nlp"),
        )
    groups = ("nlp", "vision")
    assert (
        decide(req(groups=groups), policy(team_quotas={"nlp": QUOTAS["nlp"], **QUOTAS}), state).team
        == "vision"
    )
    assert decide(req(groups=groups, team="nlp"), policy(), state).code == adm.QUOTA
    d = decide(req(groups=("vision",), team="nlp"), policy(), state)
    assert d.code == adm.NOT_IN_TEAM and "not a member" in d.message
    d = decide(req(groups=("vision", "misc"), team="misc"), policy(), state)
    assert d.code == adm.NOT_IN_TEAM and "no GPU quota" in d.message


def test_default_quota_for_users_in_no_team():
    state = make_state(node("h", mig=["1g.10gb"] * 7))
    pol = policy(default_quota={"servers": 1})
    first = admit(req(user="zoe", groups=()), pol, state, pod_key="jhub/jupyter-zoe")
    assert first.admitted and first.team is None
    second = decide(req(user="zoe", groups=()), pol, state)
    assert second.code == adm.QUOTA and "personal GPU quota" in second.message
    other = decide(req(user="yan", groups=()), pol, state)
    assert other.admitted  # each user has their own default quota


def test_tier_visibility_unknown_tier_and_no_matching_gpu():
    state = make_state(node("a", A100_40, mig=["1g.5gb"] * 7))
    assert decide(req(tier="full", groups=("nlp",)), policy(), state).code == adm.FORBIDDEN_TIER
    d = decide(req(tier="nope"), policy(), state)
    assert d.code == adm.UNKNOWN_TIER and "notebook" in d.message
    d = decide(req(), policy(), state)
    assert d.code == adm.NO_MATCHING_GPU and "at least 10 GB" in d.message


def test_explicit_fallback_chain_order():
    pol = build_policy(
        tiers={"t": {"compute_slices": 1}}, fallback_chains={"t": ["3g.40gb", "1g.10gb"]}
    )
    state = make_state(node("h", mig=["1g.10gb", "2g.20gb", "3g.40gb"]))
    d = decide(req(tier="t"), pol, state)
    assert d.granted.profile == "3g.40gb"
    assert [k.profile for k, _, _ in availability(state, pol.tiers["t"])] == ["3g.40gb", "1g.10gb"]


def test_admit_reserves_so_the_next_decision_sees_it():
    state = make_state(node("h", mig=["1g.10gb"]))
    first = admit(req(), policy(), state, pod_key="jhub/a")
    second = admit(req(user="bob"), policy(), state, pod_key="jhub/b")
    assert first.admitted and not second.admitted and second.code == adm.CAPACITY
    # re-admitting the same server replaces its own reservation instead of blocking on it
    again = admit(req(), policy(), state, pod_key="jhub/a")
    assert again.admitted and list(state.reservations) == ["jhub/a"]


@pytest.mark.parametrize("tier", ["notebook", "training", "strict"])
def test_decisions_are_deterministic(tier):
    def build():
        return make_state(
            node("b", mig=["1g.10gb"] * 3 + ["3g.40gb"]),
            node("a", mig=["1g.10gb"] * 3 + ["3g.40gb"]),
        )

    assert (
        decide(req(tier=tier), policy(), build()).to_dict()
        == decide(req(tier=tier), policy(), build()).to_dict()
    )


# ----------------------------------------------------------------------------------------
# `kubectl cordon` sets spec.unschedulable, and the node lifecycle controller then adds the
# taint node.kubernetes.io/unschedulable:NoSchedule (not-ready / unreachable for NotReady
# nodes). The taint made the node unreachable for every tier, so its slice types vanished
# from the chain: a cluster under maintenance answered "no GPU fits this tier, ask your
# admin" (no-matching-gpu), and a fallback past a cordoned type was not called a fallback.

CORDON_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


UNREACHABLE_TAINTS = [
    {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
]


def _decide(*nodes, tier="t"):
    from mig_spawner.core.admission import SpawnRequest, decide
    from mig_spawner.core.policy import build_policy

    state = ClusterState()
    for n in nodes:
        state.apply_node_event(ADDED, n)
    pol = build_policy(tiers={"t": {"compute_slices": 1, "min_memory_gb": 10}})
    return decide(SpawnRequest(user="u", tier=tier), pol, state), state, pol


def test_a_cordoned_node_with_its_taint_is_reported_cordoned():
    d, state, pol = _decide(
        node("c", mig=["1g.10gb"] * 7, unschedulable=True, taints=[CORDON_TAINT])
    )
    assert d.code == "capacity", d.message
    assert [(c.slice_type.profile, c.outcome, c.reason) for c in d.candidates] == [
        ("1g.10gb", "unusable", "its node(s) are cordoned")
    ]
    from mig_spawner.core.admission import availability

    assert [(k.profile, free, total) for k, free, total in availability(state, pol.tiers["t"])] == [
        ("1g.10gb", 0, 7)
    ]


def test_a_fallback_past_a_cordoned_type_is_a_fallback():
    d, _, _ = _decide(
        node("c", mig=["1g.10gb"] * 7, unschedulable=True, taints=[CORDON_TAINT]),
        node("n", mig=["2g.20gb"], ready=False, taints=UNREACHABLE_TAINTS),
        node("ok", mig=["3g.40gb"]),
    )
    assert d.admitted and d.granted.profile == "3g.40gb" and d.fallback
    assert [c.reason for c in d.candidates[:2]] == [
        "its node(s) are cordoned",
        "its node(s) are NotReady",
    ]


def test_condition_taints_still_block_a_node_that_looks_usable():
    # A stale not-ready taint on a Ready node: the scheduler still refuses it, so do we.
    d, _, _ = _decide(
        node(
            "stale",
            mig=["1g.10gb"],
            taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}],
        )
    )
    assert d.code == "no-matching-gpu"


# ------------------------------------------------ issue 20 item 9: keep narrow tiers servable

POOL_TIERS = {
    # no node selector: every node
    "open": {"display_name": "1g open", "compute_slices": 1, "max_compute_slices": 1},
    # the labelled pool only
    "pool": {
        "display_name": "1g pool",
        "compute_slices": 1,
        "max_compute_slices": 1,
        "node_selector": {"example.com/pool": "research"},
    },
}


def pool_policy():
    return build_policy(tiers=POOL_TIERS)


def test_an_open_tier_leaves_the_pools_last_slice_while_another_node_has_one():
    # "a-pool" sorts first by name: today's "most free, then by name" took it
    state = make_state(
        node("a-pool", mig=["1g.10gb"], labels={"example.com/pool": "research"}),
        node("b-open", mig=["1g.10gb"]),
    )
    d = admit(req(tier="open", groups=()), pool_policy(), state, pod_key="jhub/jupyter-alice")
    assert d.admitted and d.node == "b-open"
    # so the pool tier still gets its slice
    pool = admit(req("bob", "pool", groups=()), pool_policy(), state, pod_key="jhub/jupyter-bob")
    assert pool.admitted and pool.node == "a-pool"
    # with only the pool's slice left, the open tier does take it (capacity beats keeping)
    state.forget("jhub/jupyter-bob")
    carol = admit(req("carol", "open", groups=()), pool_policy(), state, pod_key="jhub/jupyter-c")
    assert carol.admitted and carol.node == "a-pool"


def test_fewer_other_tiers_beat_more_free_slices():
    # the pool node has more free slices (today's pick); the open tier still goes elsewhere
    state = make_state(
        node("a-pool", mig=["1g.10gb"] * 7, labels={"example.com/pool": "research"}),
        node("b-open", mig=["1g.10gb"] * 7),
    )
    fill(state, "b-open", "nvidia.com/mig-1g.10gb", 6)
    d = decide(req(tier="open", groups=()), pool_policy(), state)
    assert d.admitted and d.node == "b-open"
    assert d.to_dict()["node"] == "b-open"
    # the pool tier itself reaches only the pool
    assert decide(req(tier="pool", groups=()), pool_policy(), state).node == "a-pool"


def test_ties_in_coverage_keep_most_free_then_by_name():
    state = make_state(
        node("a", mig=["1g.10gb"] * 2),
        node("b", mig=["1g.10gb"] * 3),
        node("c", mig=["1g.10gb"] * 3),
        node("d-pool", mig=["1g.10gb"] * 7, labels={"example.com/pool": "research"}),
    )
    assert decide(req(tier="open", groups=()), pool_policy(), state).node == "b"


def test_a_retry_avoiding_the_spare_node_takes_the_pools_slice():
    state = make_state(
        node("a-pool", mig=["1g.10gb"], labels={"example.com/pool": "research"}),
        node("b-open", mig=["1g.10gb"]),
    )
    request = SpawnRequest(user="alice", tier="open", avoid_nodes=frozenset({"b-open"}))
    d = decide(request, pool_policy(), state)
    assert d.admitted and d.node == "a-pool"
