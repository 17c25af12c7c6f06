"""The demand record: one log line and one JSON line per GPU claim end, through a real hub."""

from __future__ import annotations

import asyncio
import json
import logging

from hub_harness import spawn, stop, wait_ready

from mig_spawner.core.demand import parse_lines


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


async def test_served_and_refused_claims_are_logged_and_appended_to_the_file(hub, tmp_path):
    path = tmp_path / "demand.jsonl"
    app, _ = await hub(
        team_quotas={"vision": {"compute_slices": 3}, "nlp": {"compute_slices": 4}},
        demand_log_file=str(path),
    )
    logs = Lines()
    log = app.users["bob"].spawner.log
    log.addHandler(logs)
    try:
        assert (await spawn(app, "bob", {"tier": "notebook"})).status_code in (201, 202)
        await wait_ready(app, "bob")
        assert not path.exists() or path.read_text() == ""  # nothing until the claim ends
        refused = await spawn(app, "bob", {"tier": "training"}, server="big")
        assert refused.status_code == 403
        await stop(app, "bob")
    finally:
        log.removeHandler(logs)

    lines = [line for line in logs.lines if line.startswith("demand ")]
    assert len(lines) == 2, logs.lines
    from_log = parse_lines(lines).records
    from_file = parse_lines(path.read_text().splitlines()).records
    assert [r.to_dict() for r in from_log] == [r.to_dict() for r in from_file]
    refused_rec, served = from_file  # the refusal ends first, the server when stopped
    assert refused_rec.outcome == "refused" and refused_rec.code == "quota"
    assert (refused_rec.tier, refused_rec.profile, refused_rec.granted) == (
        "training",
        "3g.40gb",
        None,
    )
    assert refused_rec.duration_s is None and refused_rec.team == "vision"
    assert served.outcome == "served" and served.code == "admitted"
    assert (served.tier, served.profile, served.granted) == ("notebook", "1g.10gb", "1g.10gb")
    assert served.gpu == "NVIDIA-H100-80GB-HBM3" and served.user == "bob"
    assert served.duration_s is not None and served.duration_s > 0
    assert served.waited_s >= 0 and served.t <= refused_rec.t
    raw = json.loads(path.read_text().splitlines()[1])
    assert raw["held_s"] == raw["duration_s"] and raw["team"] == "vision"


async def test_a_start_that_fails_after_admission_is_recorded_as_abandoned(hub, tmp_path):
    path = tmp_path / "demand.jsonl"

    def broken_hook(spawner, pod):
        raise RuntimeError("the pod hook broke")

    app, _ = await hub(
        demand_log_file=str(path), extra={"KubeSpawner": {"modify_pod_hook": broken_hook}}
    )
    await spawn(app, "bob", {"tier": "notebook"})
    spawner = app.users["bob"].spawners[""]
    for _ in range(400):
        future = spawner._spawn_future
        if future is not None and future.done():
            break
        await asyncio.sleep(0.05)
    assert future is not None and future.done() and future.exception() is not None
    for _ in range(100):  # the record is written as the failure unwinds
        if path.exists() and path.read_text():
            break
        await asyncio.sleep(0.05)
    (record,) = parse_lines(path.read_text().splitlines()).records
    assert record.outcome == "abandoned" and record.code == "admitted"
    assert record.granted == "1g.10gb" and record.duration_s is None


async def test_a_server_running_across_a_hub_restart_is_recorded_served_when_it_stops(
    hub, tmp_path
):
    path = tmp_path / "demand.jsonl"
    app, _ = await hub(demand_log_file=str(path))
    await spawn(app, "bob", {"tier": "notebook"})
    await wait_ready(app, "bob")
    spawner = app.users["bob"].spawners[""]
    before = spawner.claim
    assert before.requested_at is not None and before.bound_at is not None
    # A hub restart: the new hub knows the server only from its saved state.
    saved = json.loads(json.dumps(spawner.get_state()))
    spawner.claim = None
    spawner.load_state(saved)
    assert spawner.claim is not before and spawner.claim.bound_at == before.bound_at
    await asyncio.sleep(0.3)
    await stop(app, "bob")
    (record,) = parse_lines(path.read_text().splitlines()).records
    assert record.outcome == "served" and record.granted == "1g.10gb"
    assert record.t == round(before.requested_at, 3)
    ended = spawner.claim.ended_at
    assert record.duration_s == round(ended - before.bound_at, 3) and record.duration_s >= 0.3
    assert record.waited_s == round(before.bound_at - before.requested_at, 3)
