"""A spawn's claim: its transitions, the illegal ones refused, and its saved state."""

from __future__ import annotations

import json

import pytest

from mig_spawner.core.claim import (
    BOUND,
    DECIDED,
    MOVES,
    PINNED,
    RECORD_KEY,
    REFUSED,
    RELEASED,
    RESERVED,
    STATES,
    WAITING,
    Claim,
    IllegalTransition,
)

RECORD = {
    "profile": "gpu",
    "tier": "notebook",
    "tier_name": "1g notebook",
    "slice": "2g.20gb",
    "resource": "nvidia.com/mig-2g.20gb",
    "gpu": "H100 80GB",
    "node": "a",
    "team": "vision",
    "fallback": True,
    "requested": "1g.10gb",
}


def new() -> Claim:
    return Claim.request_for("jhub/jupyter-bob", "bob", "", {"profile": "gpu", RECORD_KEY: {}})


def test_a_gpu_claim_walks_requested_to_bound_to_released():
    claim = new()
    assert claim.request == {"profile": "gpu"}  # a record key in a request is not a request
    steps = [claim]
    steps.append(steps[-1].decide(RECORD))
    steps.append(steps[-1].reserve())
    steps.append(steps[-1].pin("a"))
    steps.append(steps[-1].bind())
    steps.append(steps[-1].release("stopped"))
    assert [c.state for c in steps] == [
        "requested",
        DECIDED,
        RESERVED,
        PINNED,
        BOUND,
        RELEASED,
    ]
    assert [c.holds for c in steps] == [False, False, True, True, True, False]
    assert steps[0].state == "requested"  # each transition made a new claim
    assert steps[-1].reason == "stopped" and steps[-1].ended


def test_a_moved_reservation_repins_and_the_grant_follows():
    claim = new().decide(RECORD).reserve().pin("a").pin("b")
    assert claim.node == "b" and claim.grant["node"] == "b"
    assert claim.environment()["MIG_SPAWNER_NODE"] == "b"


def test_waiting_refused_and_cpu_paths():
    assert new().wait("queued").decide(RECORD).state == DECIDED
    assert new().wait("queued").refuse("too long").state == REFUSED
    cpu = new().decide({"profile": "cpu", "gpu": None}).pin().bind()
    assert cpu.state == BOUND and not cpu.gpu and not cpu.holds


@pytest.mark.parametrize("state", STATES)
def test_every_transition_the_diagram_lacks_is_refused(state):
    claim = Claim("jhub/p", "u", state=state, grant=RECORD)
    moves = {
        WAITING: lambda c: c.wait("w"),
        DECIDED: lambda c: c.decide(RECORD),
        RESERVED: lambda c: c.reserve(),
        PINNED: lambda c: c.pin("a"),
        BOUND: lambda c: c.bind(),
        RELEASED: lambda c: c.release("r"),
        REFUSED: lambda c: c.refuse("no"),
    }
    for to, move in moves.items():
        if to in MOVES[state]:
            assert move(claim).state == to
        else:
            with pytest.raises(IllegalTransition, match=f"from {state} to {to}"):
                move(claim)


def test_released_and_refused_are_final():
    for ended in (new().release("cancelled"), new().refuse("quota")):
        with pytest.raises(IllegalTransition):
            ended.decide(RECORD)
        with pytest.raises(IllegalTransition):
            ended.release("again")


def test_the_grant_is_shown_beside_the_request_never_instead_of_it():
    claim = new().decide(RECORD).reserve().pin("a").bind()
    shown = claim.shown_options()
    assert shown["profile"] == "gpu: 2g.20gb on H100 80GB (fallback from 1g.10gb)"
    assert shown[RECORD_KEY] == RECORD
    assert claim.request == {"profile": "gpu"}  # unchanged
    assert claim.release("stopped").shown_options() == {"profile": "gpu"}
    tier_only = Claim.request_for("jhub/p", "u", "", {"tier": "notebook"}).decide(RECORD)
    assert tier_only.asked_options() == {"tier": "notebook", "profile": "gpu"}
    env = claim.environment()
    assert env["MIG_SPAWNER_SLICE"] == "2g.20gb" and env["MIG_SPAWNER_FALLBACK"] == "true"


def test_the_saved_state_round_trips_through_json_to_a_bound_claim():
    claim = new().decide(RECORD).reserve().pin("a").bind()
    saved = json.loads(json.dumps(claim.to_state()))
    record = json.loads(json.dumps(claim.record()))
    back = Claim.from_state(saved, record)
    assert back == claim  # key, user, server, state, grant, node
    assert back.request == claim.request
    assert back.release("stopped").state == RELEASED
    with pytest.raises(ValueError, match="not a saved claim"):
        Claim.from_state({"user": "bob"}, record)


def test_times_are_saved_and_an_ended_claim_makes_its_demand_record():
    from mig_spawner.core.demand import claim_record

    claim = Claim.request_for("jhub/jupyter-bob", "bob", "", {"tier": "notebook"}, now=100.0)
    claim = claim.decide({**RECORD, "product": "NVIDIA-H100-80GB-HBM3"}, now=101.0)
    claim = claim.reserve().pin("a").bind(now=103.0)
    assert claim_record(claim) is None  # it has not ended
    saved = json.loads(json.dumps(claim.to_state()))
    back = Claim.from_state(saved, claim.record())  # a hub restart
    assert (back.requested_at, back.decided_at, back.bound_at) == (100.0, 101.0, 103.0)
    served = claim_record(back.release("stopped", now=160.0))
    assert (served.outcome, served.t, served.waited_s, served.duration_s) == (
        "served",
        100.0,
        3.0,
        57.0,
    )
    assert (served.profile, served.granted, served.gpu) == (
        "1g.10gb",
        "2g.20gb",
        "NVIDIA-H100-80GB-HBM3",
    )
    at0 = Claim.request_for("jhub/jupyter-bob", "bob", "", {"profile": "gpu"}, now=1.0)
    abandoned = claim_record(at0.decide(RECORD, now=1.0).reserve().release("start failed", now=9.0))
    assert abandoned.outcome == "abandoned" and abandoned.waited_s == 8.0
    assert abandoned.duration_s is None and abandoned.code == "admitted"
    # a CPU profile, an older hub's saved claim (no times) and a garbled time: no record
    cpu = at0.decide({"profile": "cpu", "gpu": None}, now=1.0).pin().bind(now=2.0)
    assert claim_record(cpu.release("stopped", now=3.0)) is None
    older = Claim.from_state({**saved, "requested_at": None, "bound_at": "soon"}, RECORD)
    assert older.bound_at is None and claim_record(older.release("x", now=5.0)) is None
