"""The three misleading messages of issue 13, and the rules every refusal follows.

Each test builds the situation the issue quotes and asserts the new wording: the real
cause first, advice only when it can help, display names, numbers that add up.
"""

from k8s_factories import A100_40, H100, node, pod
from test_admission import fill, make_state

from mig_spawner.core import admission as adm
from mig_spawner.core import messages
from mig_spawner.core.admission import SpawnRequest, decide
from mig_spawner.core.cluster import ADDED
from mig_spawner.core.policy import build_policy

NOTEBOOK = {
    "display_name": "1g notebook",
    "compute_slices": 1,
    "min_memory_gb": 10,
    "max_compute_slices": 3,
    "max_fallback_steps": 2,
}
FULL = {"display_name": "7g full GPU", "compute_slices": 7, "min_memory_gb": 40, "fallback": False}
TRAINING = {"display_name": "3g training", "compute_slices": 3, "min_memory_gb": 40}


def test_erin_no_server_1g_full_fallback_over_her_whole_quota():
    """Issue: '... would exceed your personal GPU quota: 0 of 1 ... needs 2 more. You have
    no server running. Stop a server ...' -- never said 1g was full, gave useless advice."""
    state = make_state(
        node("h1", mig=["1g.10gb"] * 4, product=H100), node("a1", mig=["2g.10gb"], product=A100_40)
    )
    fill(state, "h1", "nvidia.com/mig-1g.10gb", 4)
    pol = build_policy(tiers={"notebook": NOTEBOOK}, default_quota={"compute_slices": 1})
    d = decide(SpawnRequest(user="erin", tier="notebook"), pol, state)
    assert not d.admitted and d.code == adm.QUOTA
    assert d.message == (
        "Every 1g.10gb on H100 80GB is taken (0 of 4 free), and the fallback, "
        "2g.10gb on A100 40GB, needs 2 compute slices: more than the whole of your personal "
        "GPU quota (1 compute slice). Try again when a 1g.10gb slice is free."
    )
    assert "stop" not in d.message.lower()
    assert "notebook'" not in d.message  # no slug


def test_tier_larger_than_the_teams_whole_quota_says_so_and_who_can_raise_it():
    """Issue: 'a 7g tier for a team whose whole quota is 4 says "needs 7 more ... Stop a
    server"'."""
    state = make_state(node("h1", mig=[], product=H100, whole_gpus=1))
    pol = build_policy(tiers={"full": FULL}, team_quotas={"nlp": {"compute_slices": 4}})
    d = decide(SpawnRequest(user="carol", tier="full", groups=("nlp",)), pol, state)
    assert not d.admitted and d.code == adm.QUOTA
    assert d.message.startswith(
        "'7g full GPU' needs 7 compute slices (whole H100 80GB GPU): more than the whole of "
        "team nlp's GPU quota (4 compute slices)."
    )
    assert d.message.endswith("It cannot start under this quota; your hub admin can raise it.")
    assert "stop" not in d.message.lower() and "more\n" not in d.message


def test_capacity_refusal_never_says_pick_another_tier():
    """Issue: 'Try again in a few minutes, or pick another tier' when every other tier is
    disabled. A decision about one tier cannot know the others: it says what is full."""
    state = make_state(node("h1", mig=["1g.10gb", "3g.40gb"], product=H100))
    fill(state, "h1", "nvidia.com/mig-1g.10gb", 1)
    fill(state, "h1", "nvidia.com/mig-3g.40gb", 1)
    pol = build_policy(tiers={"notebook": NOTEBOOK, "training": TRAINING})
    for tier in ("notebook", "training"):
        d = decide(SpawnRequest(user="erin", tier=tier), pol, state)
        assert not d.admitted and d.code == adm.CAPACITY
        assert "another tier" not in d.message
    assert d.message == (
        "No slice for '3g training' is free: every 3g.40gb on H100 80GB is taken (0 of 1 "
        "free). Try again when a server stops."
    )


def test_stop_a_server_is_offered_only_when_stopping_would_make_room():
    state = make_state(
        node("h1", mig=["1g.10gb"] * 7, product=H100),
        pods=[
            pod(
                "bob-1",
                node="h1",
                resources={"nvidia.com/mig-1g.10gb": 1},
                user="bob",
                team="vision",
                server_name="scratch",
            ),
        ],
    )
    pol = build_policy(tiers={"notebook": NOTEBOOK}, team_quotas={"vision": {"servers": 1}})
    d = decide(SpawnRequest(user="bob", tier="notebook", groups=("vision",)), pol, state)
    assert not d.admitted and d.code == adm.QUOTA
    assert "team vision's GPU quota has 1 of 1 servers in use, 0 left" in d.message
    assert "Stop one of your servers: scratch (1g.10gb), or ask your hub admin" in d.message
    # alice in the same team has no server: she is told who holds it, not to stop one.
    d = decide(SpawnRequest(user="alice", tier="notebook", groups=("vision",)), pol, state)
    assert "stop one of your servers" not in d.message.lower()
    assert "when another member of team vision stops a server" in d.message


def test_amounts_are_singular_and_plural_right():
    assert messages.amount("compute_slices", 1) == "1 compute slice"
    assert messages.amount("compute_slices", 2) == "2 compute slices"
    assert messages.amount("memory_gb", 20) == "20 GB of GPU memory"
    assert messages.amount("servers", 1) == "1 server"


def test_quota_figures_are_those_of_the_slice_the_message_names():
    """Found by the browser walk: a 3g refused by quota whose 7g fallback was refused too
    read 'needs 7 compute slices (3g.40gb ...)' -- the figures of the wrong candidate."""
    state = make_state(
        node("h1", mig=["3g.40gb"] + ["1g.10gb"] * 4, product=H100),
        node("h2", mig=[], product=H100, whole_gpus=1),
        pods=[
            pod(
                f"bob-{i}",
                node="h1",
                resources={"nvidia.com/mig-1g.10gb": 1},
                user="bob",
                team="vision",
            )
            for i in range(3)  # 3 compute slices in use (charges come from the requests)
        ],
    )
    pol = build_policy(tiers={"training": TRAINING}, team_quotas={"vision": {"compute_slices": 4}})
    d = decide(SpawnRequest(user="alice", tier="training", groups=("vision",)), pol, state)
    assert [c.outcome for c in d.candidates] == ["quota", "quota"]
    assert d.message.startswith(
        "'3g training' needs 3 compute slices (3g.40gb on H100 80GB); team vision's GPU quota "
        "has 3 of 4 compute slices in use, 1 left."
    )
    assert d.quota.needed == 3


def test_a_per_user_limit_is_named_as_one_not_as_the_teams_quota():
    """Issue 19: a per-user limit (4 of the team's 8) was worded "team vision's GPU quota",
    so a user with room in the team's figures could not tell why she was refused."""
    state = make_state(node("h1", mig=["1g.10gb"] * 7, product=H100))
    for i in range(4):
        state.apply_pod_event(
            ADDED,
            pod(
                f"b{i}",
                node="h1",
                resources={"nvidia.com/mig-1g.10gb": 1},
                user="bob",
                team="vision",
            ),
        )
    pol = build_policy(
        tiers={"notebook": NOTEBOOK},
        team_quotas={"vision": {"compute_slices": 8, "per_user_compute_slices": 4}},
    )
    d = decide(SpawnRequest(user="bob", tier="notebook", groups=("vision",)), pol, state)
    assert not d.admitted and d.code == adm.QUOTA
    assert "team vision's per-user limit has 4 of 4 of your own compute slices in use" in (
        d.message
    )
    assert "GPU quota" not in d.message


def test_the_progress_label_names_the_slice_and_on_a_fallback_why():
    state = make_state(
        node("h1", mig=["1g.10gb"] * 2, product=H100), node("a1", mig=["2g.10gb"], product=A100_40)
    )
    pol = build_policy(tiers={"notebook": NOTEBOOK})
    d = decide(SpawnRequest(user="erin", tier="notebook"), pol, state)
    assert messages.progress_label(d.granted, d.candidates) == "1g.10gb on H100 80GB"
    fill(state, "h1", "nvidia.com/mig-1g.10gb", 2)
    d = decide(SpawnRequest(user="erin", tier="notebook"), pol, state)
    assert d.fallback
    assert messages.progress_label(d.granted, d.candidates) == (
        "2g.10gb on A100 40GB (every 1g.10gb taken)"
    )


def test_waiting_line_messages():
    from mig_spawner.core.messages import duration, in_line, line_timeout
    from mig_spawner.core.nodes import SliceType
    from mig_spawner.core.policy import build_policy

    tier = build_policy(tiers={"nb": {"display_name": "1g notebook"}}).tiers["nb"]
    kind = SliceType("mixed", "NVIDIA-H100-80GB-HBM3", "1g.10gb", 1, 10)
    assert in_line(2, tier, kind, 360.0) == "#2 in line for 1g notebook (H100 80GB): about 6 min"
    assert in_line(1, tier, kind, None) == "#1 in line for 1g notebook (H100 80GB): time unknown"
    assert line_timeout(1800, 2, kind) == "waited 30 min, #2 in line; no 1g slice freed"
    assert [duration(s) for s in (12, 89, 3600, 3900)] == ["12 s", "1 min", "1 h", "1 h 5 min"]
