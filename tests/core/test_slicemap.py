"""The slice map: slices drawn at catalog placements, holders laid on them, team rows."""

from __future__ import annotations

import pytest
from k8s_factories import A100_40, H100, node, pod

from mig_spawner.core import slicemap as sm
from mig_spawner.core.admission import SpawnRequest, admit
from mig_spawner.core.catalog import default_catalog
from mig_spawner.core.cluster import ADDED, ClusterState
from mig_spawner.core.policy import build_policy

BALANCED = ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]
TIERS = {
    "notebook": {"display_name": "1g", "compute_slices": 1, "min_memory_gb": 10},
    "big": {"display_name": "3g", "compute_slices": 3, "min_memory_gb": 40},
}


def state_of(*nodes, pods=()):
    state = ClusterState()
    for n in nodes:
        state.apply_node_event(ADDED, n)
    for p in pods:
        state.apply_pod_event(ADDED, p)
    return state


def _allowed(product, profile):
    model = default_catalog().model_for_product(product)
    p = model.profile(profile)
    return {start for start, _ in p.placements}, p.memory_slices, model.memory_slices


def _check_valid(m: sm.NodeMap, product: str):
    for gpu in m.gpus:
        taken = set()
        for cell in gpu.cells:
            starts, size, width = _allowed(product, cell.profile)
            assert cell.start in starts, (cell, starts)
            assert cell.size == size
            span = set(range(cell.start, cell.start + cell.size))
            assert not taken & span, f"overlap on GPU {gpu.index}: {cell}"
            assert max(span) < width
            taken |= span


def test_balanced_h100_fits_one_gpu_at_allowed_placements():
    # Greedy first-fit would put 1g.10gb at 6 and fail the second (no placement at 7).
    (m,) = sm.node_maps(state_of(node("a", mig=BALANCED, labels={"nvidia.com/gpu.count": "1"})))
    assert len(m.gpus) == 1 and m.problems == ()
    assert sorted(c.profile for c in m.gpus[0].cells) == sorted(BALANCED)
    _check_valid(m, H100)


def test_seven_1g_and_two_gpus_worth_of_mixed_layouts():
    devices = ["1g.10gb"] * 7 + ["3g.40gb", "4g.40gb"]
    (m,) = sm.node_maps(state_of(node("a", mig=devices, labels={"nvidia.com/gpu.count": "2"})))
    assert len(m.gpus) == 2 and not m.problems
    _check_valid(m, H100)
    assert sum(len(g.cells) for g in m.gpus) == 9


def test_gpu_count_label_adds_empty_gpus_and_flags_impossible_layouts():
    (m,) = sm.node_maps(state_of(node("a", mig=["7g.80gb"], labels={"nvidia.com/gpu.count": "3"})))
    assert [len(g.cells) for g in m.gpus] == [1, 0, 0]
    (m,) = sm.node_maps(
        state_of(node("b", mig=["7g.80gb", "7g.80gb"], labels={"nvidia.com/gpu.count": "1"}))
    )
    assert len(m.gpus) == 2 and "do not fit 1 GPU" in m.problems[0]


def test_holders_states_and_fallback_marking():
    alice = pod("alice", node="a", resources={"nvidia.com/mig-1g.10gb": 1}, user="alice", team="v")
    alice["metadata"]["annotations"]["mig-spawner/tier"] = "notebook"  # the hub's record
    bob = pod("bob", node="a", resources={"nvidia.com/mig-2g.20gb": 1}, user="bob", team="v")
    bob["metadata"]["annotations"]["mig-spawner/requested-profile"] = "1g.10gb"
    other = pod("batch", namespace="ml", node="a", resources={"nvidia.com/mig-3g.40gb": 1})
    state = state_of(node("a", mig=BALANCED), pods=[alice, bob, other])
    (m,) = sm.node_maps(state)
    cells = {(c.profile, c.state) for g in m.gpus for c in g.cells}
    assert cells == {
        ("1g.10gb", sm.USED),
        ("1g.10gb", sm.FREE),
        ("2g.20gb", sm.USED),
        ("3g.40gb", sm.OTHER),
    }
    held = {c.holder.key: c.holder for g in m.gpus for c in g.cells if c.holder}
    assert held["jhub/alice"].tier == "notebook" and not held["jhub/alice"].fallback
    assert held["jhub/bob"].fallback and held["jhub/bob"].requested == "1g.10gb"
    assert not held["ml/batch"].managed
    assert [(n, h.key) for n, h in sm.fallback_servers(state)] == [("a", "jhub/bob")]
    # The free count on the map is the state's own free count.
    kind = next(k for k in state.nodes["a"].offers if k.profile == "1g.10gb")
    assert m.count(sm.FREE) == state.free(state.nodes["a"], kind) == 1


def test_a_reservation_is_drawn_reserved_with_its_requested_profile():
    pol = build_policy(tiers=TIERS, team_quotas={"v": {"compute_slices": 8}})
    state = state_of(node("a", mig=["1g.10gb", "3g.40gb"]))
    first = admit(SpawnRequest("u1", "notebook", ("v",)), pol, state, pod_key="jhub/u1")
    second = admit(SpawnRequest("u2", "notebook", ("v",)), pol, state, pod_key="jhub/u2")
    assert first.admitted and second.admitted and second.fallback
    (m,) = sm.node_maps(state)
    reserved = [c for g in m.gpus for c in g.cells if c.state == sm.RESERVED]
    assert len(reserved) == 2
    by_user = {c.holder.user: c.holder for c in reserved}
    assert by_user["u2"].fallback and by_user["u2"].requested == "1g.10gb"
    assert not by_user["u1"].fallback


def test_cordoned_node_free_slices_are_unusable_and_overbooking_is_reported():
    over = [
        pod(f"p{i}", node="a", resources={"nvidia.com/mig-1g.10gb": 1}, user="x") for i in range(3)
    ]
    state = state_of(
        node("a", mig=["1g.10gb", "1g.10gb", "3g.40gb"], unschedulable=True), pods=over
    )
    (m,) = sm.node_maps(state)
    assert not m.usable and m.why_unusable == "cordoned"
    assert m.count(sm.UNUSABLE) == 1  # the 3g.40gb
    assert any("1 more nvidia.com/mig-1g.10gb held" in p for p in m.problems)


def test_whole_gpus_single_strategy_and_unknown_models():
    state = state_of(
        node("whole", strategy="none", whole_gpus=2),
        node("single", A100_40, strategy="single", mig=["1g.5gb"] * 7),
        node("odd", "NVIDIA-Future-GPU", mig=["2g.20gb", "2g.20gb"]),
    )
    maps = {m.name: m for m in sm.node_maps(state)}
    assert [(c.start, c.size) for g in maps["whole"].gpus for c in g.cells] == [(0, 8), (0, 8)]
    assert len(maps["single"].gpus) == 1
    _check_valid(maps["single"], A100_40)
    assert sum(len(g.cells) for g in maps["odd"].gpus) == 2


def test_capacity_rows_match_state_free():
    p = pod("p", node="a", resources={"nvidia.com/mig-1g.10gb": 1}, user="x")
    state = state_of(node("a", mig=BALANCED), node("b", A100_40, mig=["7g.40gb"]), pods=[p])
    rows = {(r.node, r.slice_type.profile): r for r in sm.capacity(state)}
    assert (rows["a", "1g.10gb"].total, rows["a", "1g.10gb"].free, rows["a", "1g.10gb"].held) == (
        2,
        1,
        1,
    )
    assert rows["b", "7g.40gb"].free == 1
    types = sm.by_type(sm.capacity(state))
    a100, one = types[0], types[1]
    assert [t.profile for t in types] == ["7g.40gb", "1g.10gb", "2g.20gb", "3g.40gb"]
    assert (one.profile, one.total, one.free, one.held, one.nodes) == ("1g.10gb", 2, 1, 1, 1)
    assert (a100.gpu, a100.profile, a100.free) == ("A100 40GB", "7g.40gb", 1)


def test_team_rows_are_usage_against_each_limit():
    pol = build_policy(
        tiers=TIERS,
        team_quotas={"v": {"compute_slices": 4, "servers": 3}, "n": {"memory_gb": 100}},
    )
    p = pod("p", node="a", resources={"nvidia.com/mig-3g.40gb": 1}, user="x", team="v")
    rows = {r.team: r for r in sm.team_rows(pol, state_of(node("a", mig=BALANCED), pods=[p]))}
    assert list(rows) == ["v", "n"]
    v = dict((u, (used, lim)) for u, used, lim in rows["v"].limits)
    assert v["compute_slices"] == (3, 4) and v["servers"] == (1, 3) and v["memory_gb"] == (40, None)
    assert rows["n"].used("memory_gb") == 0 and rows["v"].servers == 1


@pytest.mark.parametrize("n_nodes", [300])
def test_hundreds_of_nodes_draw_and_a_page_of_names_filters(n_nodes):
    nodes = [
        node(f"n{i:03}", mig=BALANCED * 2, labels={"nvidia.com/gpu.count": "2"})
        for i in range(n_nodes)
    ]
    maps = sm.node_maps(state_of(*nodes))
    assert len(maps) == n_nodes and all(len(m.gpus) == 2 and not m.problems for m in maps)
    assert [m.name for m in sm.node_maps(state_of(*nodes), names=["n007", "nope"])] == ["n007"]
