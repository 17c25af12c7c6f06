"""Demand records: built by the hub, read back from log lines and JSON lines."""

from __future__ import annotations

import json

import pytest

from mig_spawner.core.demand import build_record, parse_lines, record_from_dict, record_line


def test_a_served_record_round_trips_through_its_log_line():
    rec = build_record(
        requested_at=100.0,
        started_at=104.5,
        ended_at=704.5,
        outcome="served",
        tier="notebook",
        profile="1g.10gb",
        team="vision",
        user="alice",
        granted="2g.20gb",
        gpu="NVIDIA-H100-80GB-HBM3",
        code="admitted",
    )
    assert (rec.waited_s, rec.duration_s) == (4.5, 600.0)
    line = record_line(rec)
    assert line.startswith("demand {") and "\n" not in line
    log_line = f"[I 2026-12-06 21:00:00.000 JupyterHub spawner:99] {line}"
    (back,) = parse_lines([log_line]).records
    assert back == rec


def test_refused_and_abandoned_records_hold_no_time():
    refused = build_record(
        requested_at=5, ended_at=5, outcome="refused", tier="t", profile="3g.40gb", code="quota"
    )
    assert refused.duration_s is None and refused.waited_s == 0
    abandoned = build_record(
        requested_at=5, ended_at=35, outcome="abandoned", tier="t", profile="1g.10gb"
    )
    assert abandoned.duration_s is None and abandoned.waited_s == 30
    with pytest.raises(ValueError, match="outcome"):
        build_record(requested_at=0, ended_at=1, outcome="weird", tier=None, profile="1g.10gb")


def test_garbled_lines_are_skipped_counted_and_located_other_lines_ignored():
    lines = [
        "[I ... JupyterHub app:1] Hub started",
        json.dumps({"t": 1, "profile": "1g.10gb", "duration_s": 60}),
        "demand {not json",
        json.dumps({"t": 2, "profile": "banana", "duration_s": 60}),
        json.dumps({"t": -3, "profile": "1g.10gb", "duration_s": 60}),
        json.dumps({"t": 4, "profile": "1g.10gb"}),  # served needs a duration
        json.dumps({"t": 5, "profile": "3g.40gb", "outcome": "refused"}),
        "",
    ]
    result = parse_lines(lines, source="hub.log")
    assert [r.t for r in result.records] == [1, 5]
    assert result.skipped == 4 and result.ignored == 1
    assert result.problems[0].startswith("hub.log:3: not JSON")
    assert "hub.log:4: not a MIG profile name: 'banana'" in result.problems[1]
    assert result.problems[2] == "hub.log:5: t must be >= 0, got -3"
    assert "duration_s" in result.problems[3]


def test_hand_written_records_take_k8s_spellings_and_optional_fields():
    rec = record_from_dict({"t": 10, "profile": "1g.10gb.me", "duration_s": 5, "gpu": "X"})
    assert rec.profile == "1g.10gb+me" and rec.gpu == "X" and rec.team is None
    with pytest.raises(ValueError, match="'t' and 'profile'"):
        record_from_dict({"profile": "1g.10gb"})
