"""Reclaim: idle servers warned, then stopped, only for spawns waiting in line."""

from __future__ import annotations

import dataclasses
import datetime

from k8s_factories import node, pod, state_with

from mig_spawner.core import reclaim
from mig_spawner.core.idle import GpuReading
from mig_spawner.core.policy import build_policy
from mig_spawner.core.waitline import Place

NOW = 1_800_000_000.0
HOUR = 3600.0
RULES = {"idle_after": HOUR, "grace": 600}
TIERS = {
    "notebook": {"display_name": "1g notebook", "max_wait": 1800, "reclaim": RULES},
    "training": {"display_name": "3g training", "compute_slices": 3, "max_wait": 1800},
    "plain": {"display_name": "1g plain", "fallback": False},
}
H1 = node("h1", mig=["1g.10gb"] * 3 + ["2g.20gb"])


def server(
    name, user, *, profile="1g.10gb", asked=None, tier="notebook", team="vision", age=4 * HOUR
):
    obj = pod(
        name,
        node="h1",
        resources={f"nvidia.com/mig-{profile}": 1},
        user=user,
        team=team,
        tier=tier,
        requested_profile=asked or profile,
        granted_profile=profile,
    )
    created = datetime.datetime.fromtimestamp(NOW - age, datetime.timezone.utc)
    obj["metadata"]["uid"] = f"uid-{name}"
    obj["metadata"]["creationTimestamp"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    return obj


def waiting(user="dave", tier="notebook", team="vision", at=NOW - 60):
    return Place(f"jhub/jupyter-{user}", user, "", tier, team, (team,), at, at + 1800)


def policy(tiers=TIERS, quotas=None):
    return build_policy(tiers=tiers, team_quotas=quotas or {"vision": {"compute_slices": 20}})


def full_cluster():
    """h1's three 1g slices and its 2g taken: alice idle 3 h, carol idle 2 h, erin busy;
    bob borrows the 2g (his notebook asked a 1g)."""
    return state_with(
        H1,
        server("jupyter-alice", "alice"),
        server("jupyter-carol", "carol"),
        server("jupyter-erin", "erin"),
        server("jupyter-bob", "bob", profile="2g.20gb", asked="1g.10gb"),
    )


IDLE = {"jhub/jupyter-alice": 3 * HOUR, "jhub/jupyter-carol": 2 * HOUR, "jhub/jupyter-erin": 60}


def run(places, *, warnings=None, now=NOW, activity=IDLE, gpu=None, state=None, **kw):
    return reclaim.plan(
        kw.pop("pol", None) or policy(),
        state or full_cluster(),
        places,
        activity=activity,
        gpu=gpu,
        warnings=warnings or {},
        now=now,
        **kw,
    )


def test_nobody_waits_nobody_is_warned_however_idle():
    p = run([])
    assert p.warned == () and p.stops == () and dict(p.warnings) == {}
    shown = {c.key: c.shown for c in p.candidates}
    assert shown["jhub/jupyter-alice"] == "idle 3 h"
    assert shown["jhub/jupyter-erin"] == "idle 60 s"


def test_one_waiter_warns_the_longest_idle_once_then_stops_it_after_the_grace():
    activity = {**IDLE, "jhub/jupyter-bob": 30}  # the borrower is active: not a candidate
    first = run([waiting()], activity=activity)
    (w,) = first.warned
    assert (w.user, w.reason, w.deadline, w.why) == ("alice", "idle", NOW + 600, "idle 3 h")
    assert w.message(NOW) == (
        "Your server (1g notebook, 1g.10gb) is idle 3 h, and someone is waiting for a GPU"
        " slice. It will be stopped in 10 min (at 08:10 UTC) unless you use it."
    )
    assert first.stops == ()  # one place: carol, idle too, is left alone

    later = run([waiting()], activity=activity, warnings=first.warnings, now=NOW + 599)
    assert later.warned == () and later.stops == () and later.warnings == first.warnings

    due = run([waiting()], activity=activity, warnings=later.warnings, now=NOW + 600)
    (stop,) = due.stops
    assert (stop.key, stop.reason, stop.for_key) == (
        "jhub/jupyter-alice",
        "idle",
        "jhub/jupyter-dave",
    )
    assert stop.detail == ("idle 3 h; for dave's 1g notebook waiting in line; warned at 08:00 UTC")
    assert stop.notice(NOW + 600) == (
        "Your server (1g notebook) was stopped at 08:10 UTC: it was idle 3 h and someone"
        " was waiting for its 1g.10gb slice (warned at 08:00 UTC)."
    )
    assert "jhub/jupyter-alice" not in due.warnings and due.withdrawn == ()


def test_two_waiters_two_servers_never_more_than_the_line_needs():
    activity = {**IDLE, "jhub/jupyter-bob": 30}
    p = run([waiting("dave"), waiting("frank")], activity=activity)
    assert sorted(w.user for w in p.warned) == ["alice", "carol"]
    assert len(run([waiting("dave")] * 1, activity=activity).warned) == 1


def test_a_borrower_goes_before_a_longer_idle_server():
    activity = {**IDLE, "jhub/jupyter-bob": HOUR + 1}
    (w,) = run([waiting()], activity=activity).warned
    assert (w.user, w.holds) == ("bob", "2g.20gb")


def test_activity_withdraws_the_warning_and_the_next_idle_server_is_warned():
    first = run([waiting()], activity={**IDLE, "jhub/jupyter-bob": 30})
    back = {**IDLE, "jhub/jupyter-alice": 10, "jhub/jupyter-bob": 30}
    p = run([waiting()], activity=back, warnings=first.warnings, now=NOW + 600)
    assert p.stops == ()
    ((gone, why),) = p.withdrawn
    assert (gone.user, why) == ("alice", "active 10 s ago")
    assert [w.user for w in p.warned] == ["carol"]


def test_the_line_emptying_withdraws_the_warning():
    first = run([waiting()], activity={**IDLE, "jhub/jupyter-bob": 30})
    p = run([], warnings=first.warnings, now=NOW + 900)
    assert p.stops == () and dict(p.warnings) == {}
    assert [(w.user, why) for w, why in p.withdrawn] == [
        ("alice", "no one waits for its slice any more")
    ]


def test_an_exempt_user_is_never_chosen_and_a_warning_of_theirs_is_withdrawn():
    first = run([waiting()], activity={**IDLE, "jhub/jupyter-bob": 30})
    p = run(
        [waiting()],
        activity={**IDLE, "jhub/jupyter-bob": 30},
        warnings=first.warnings,
        exempt={"alice"},
        now=NOW + 600,
    )
    assert p.stops == () and [w.user for w in p.warned] == ["carol"]
    assert [(w.user, why) for w, why in p.withdrawn] == [("alice", "its user is exempt")]


def test_the_gpu_must_be_idle_by_a_clear_reading_where_prometheus_is_configured():
    activity = {**IDLE, "jhub/jupyter-bob": 30}
    busy = {
        "jhub/jupyter-alice": GpuReading("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.4, 60),
        "jhub/jupyter-carol": GpuReading("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.0, 60),
    }
    (w,) = run([waiting()], activity=activity, gpu=busy).warned
    assert (w.user, w.why) == ("carol", "idle 2 h, GPU 0 %")
    # carol's series missing, alice's unknown: nobody is idle
    unknown = {"jhub/jupyter-alice": GpuReading(problem="Prometheus at x: connection refused")}
    p = run([waiting()], activity=activity, gpu=unknown)
    assert p.warned == ()
    reasons = {c.pod.user: c.idleness.reason for c in p.candidates}
    assert reasons["alice"] == "GPU activity unknown (Prometheus at x: connection refused)"
    assert reasons["carol"] == "GPU activity unknown (no GPU series for it)"


def test_a_server_already_stopping_serves_the_first_place():
    activity = {**IDLE, "jhub/jupyter-bob": 30}
    p = run([waiting()], activity=activity, stopping={"jhub/jupyter-alice"})
    assert p.warned == ()
    p = run([waiting("dave"), waiting("frank")], activity=activity, stopping={"jhub/jupyter-alice"})
    assert [w.user for w in p.warned] == ["carol"]


def test_only_a_slice_the_waiting_tier_reaches_and_its_quota_takes():
    activity = {**IDLE, "jhub/jupyter-bob": HOUR + 5}
    # a 3g training spawn: no 1g or 2g on h1 can serve it
    assert run([waiting(tier="training")], activity=activity).warned == ()
    # dave's team has room for no more than what it holds: another team's slice is no help
    state = state_with(
        H1,
        server("jupyter-alice", "alice", team="nlp"),
        server("jupyter-carol", "carol", team="vision"),
        server("jupyter-erin", "erin", team="nlp"),
        server("jupyter-bob", "bob", profile="2g.20gb", asked="1g.10gb", team="nlp"),
    )
    tight = policy(quotas={"vision": {"compute_slices": 1}, "nlp": {}})
    (w,) = run([waiting()], activity=activity, state=state, pol=tight).warned
    assert w.user == "carol"  # his own team's slice: stopping it gives the quota back


def test_a_tier_without_rules_is_never_reclaimed():
    state = state_with(H1, server("jupyter-alice", "alice", tier="plain"))
    p = run([waiting()], state=state)
    assert p.warned == ()
    (c,) = p.candidates  # shown (idle after the default hour), never reclaimable
    assert (c.shown, c.reclaimable) == ("idle 3 h", False)


def test_max_session_warns_and_stops_whatever_the_line_and_the_activity():
    tiers = {**TIERS, "notebook": {**TIERS["notebook"], "reclaim": {"max_session": 8 * HOUR}}}
    state = state_with(
        H1, server("jupyter-alice", "alice", age=9 * HOUR), server("jupyter-carol", "carol")
    )
    busy = {"jhub/jupyter-alice": 5, "jhub/jupyter-carol": 5}
    first = run([], state=state, activity=busy, pol=policy(tiers))
    (w,) = first.warned
    assert (w.user, w.reason, w.why) == (
        "alice",
        "max_session",
        "running 9 h (1g notebook allows 8 h)",
    )
    assert w.message(NOW).endswith("It will be stopped in 10 min (at 08:10 UTC): save your work.")
    (stop,) = run(
        [], state=state, activity=busy, pol=policy(tiers), warnings=first.warnings, now=NOW + 600
    ).stops
    assert (stop.reason, stop.for_key) == ("max_session", "")
    assert stop.notice(NOW + 600).startswith("Your server (1g notebook) was stopped at 08:10 UTC:")
    # exempt: neither warned nor stopped
    assert run([], state=state, activity=busy, pol=policy(tiers), exempt={"alice"}).warned == ()


def test_an_over_time_server_serves_the_line_before_any_idle_one_is_warned():
    """alice is past max_session (stopping anyway, after her grace): she serves dave's
    place, so carol, idle, is not warned too; two places: carol serves the second."""
    rules = {**RULES, "max_session": 3 * HOUR}
    tiers = {**TIERS, "notebook": {**TIERS["notebook"], "reclaim": rules}}
    state = state_with(
        H1,
        server("jupyter-alice", "alice", age=5 * HOUR),
        server("jupyter-carol", "carol", age=2 * HOUR),
        pod("x", namespace="other", node="h1", resources={"nvidia.com/mig-1g.10gb": 1}),
        pod("y", namespace="other", node="h1", resources={"nvidia.com/mig-2g.20gb": 1}),
    )
    activity = {"jhub/jupyter-alice": 5, "jhub/jupyter-carol": 2 * HOUR}
    p = run([waiting()], state=state, activity=activity, pol=policy(tiers))
    assert [(w.user, w.reason) for w in p.warned] == [("alice", "max_session")]
    p = run([waiting("dave"), waiting("frank")], state=state, activity=activity, pol=policy(tiers))
    assert sorted((w.user, w.reason) for w in p.warned) == [
        ("alice", "max_session"),
        ("carol", "idle"),
    ]


def test_no_team_the_quota_is_the_users_own_so_anothers_slice_gives_nothing_back():
    """dave and bob are in no team (the default quota, per user: 2 slices). dave runs a 1g
    and waits for another; bob's idle 2g would not fit dave's quota: bob is not warned."""
    state = state_with(
        H1,
        server("jupyter-dave-a", "dave", team=""),
        server("jupyter-bob", "bob", profile="2g.20gb", asked="1g.10gb", team=""),
        server("jupyter-erin", "erin"),
        server("jupyter-carol", "carol"),
    )
    activity = {"jhub/jupyter-bob": 3 * HOUR, "jhub/jupyter-erin": 30, "jhub/jupyter-carol": 30}
    lone = build_policy(
        tiers=TIERS, team_quotas={"vision": {}}, default_quota={"compute_slices": 2}
    )
    place = waiting("dave", team="")
    assert run([place], state=state, activity=activity, pol=lone).warned == ()
    # carol idle now: her 1g fits dave's quota
    activity["jhub/jupyter-carol"] = 2 * HOUR
    (w,) = run([place], state=state, activity=activity, pol=lone).warned
    assert w.user == "carol"


def test_a_new_pod_of_the_same_name_is_not_the_one_warned():
    activity = {**IDLE, "jhub/jupyter-bob": 30}
    first = run([waiting()], activity=activity)
    (w,) = first.warned
    assert w.uid == "uid-jupyter-alice"
    replaced = {k: dataclasses.replace(v, uid="an-older-pod") for k, v in first.warnings.items()}
    p = run([waiting()], activity=activity, warnings=replaced, now=NOW + 600)
    assert p.stops == ()  # warned was the old pod: the new one is warned afresh
    assert [(x.user, x.warned_at) for x in p.warned] == [("alice", NOW + 600)]


def test_time_waiting_in_line_is_not_idleness():
    """JupyterHub stamps activity as a start begins: a pod created 10 min ago after a long
    wait is idle 10 min at most, not since the stamp."""
    state = state_with(H1, server("jupyter-alice", "alice", age=600))
    (c,) = run([waiting()], state=state, activity={"jhub/jupyter-alice": 3 * HOUR}).candidates
    assert (c.shown, c.idleness.idle) == ("idle 10 min", False)
