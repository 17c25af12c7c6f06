"""The reclaim benchmark's seeded day keeps the reclaim rules (issue 23): figures, not timings."""

from __future__ import annotations

import pytest

from benchmarks import reclaim, waitline


@pytest.fixture(scope="module")
def day():
    return reclaim.run(quick=True)


def test_reclaim_serves_at_least_as_many_within_10_min_as_the_line_alone(day):
    line, both = day["line"], day["reclaim"]
    assert both["served_within_10_min_pct"] >= line["served_within_10_min_pct"]
    assert both["served"] >= line["served"]
    for m in (line, both):  # every request ends: served, timed out, or refused at once
        assert m["served"] + m["timed_out"] + m["refused_at_once"] == day["requests"]
    assert line["reclaimed"] == 0 and line["log"] == []
    assert both["reclaimed"] > 0 and both["gpu_hours_given_back"] > 0
    assert both["idle_gpu_hours_held"] < line["idle_gpu_hours_held"]


def test_every_stop_came_after_its_grace_and_for_a_place_waiting(day):
    stops = [e for e in day["reclaim"]["log"] if e["event"] == "stopped"]
    assert len(stops) == day["reclaim"]["reclaimed"] > 0
    for e in stops:
        assert e["at"] - e["warned_at"] >= reclaim.RULES["grace"]
        assert e["place_waiting"] and e["for_user"]
        assert 0 < e["waiting_s"] <= waitline.MAX_WAIT
        assert e["idle_s"] >= reclaim.RULES["idle_after"] and e["gpu"] == 0
        assert e["tier"] in reclaim.RECLAIMED.values()
    for stopped, waiting in day["reclaim"]["passes_with_stops"]:
        assert 0 < stopped <= waiting
    c = day["checks"]
    assert c["stops"] == c["for_a_place_waiting"] == c["at_or_after_grace"] == len(stops)
    assert c["passes_with_more_stops_than_places"] == 0


def test_a_server_busy_by_the_gpu_is_never_warned(day):
    assert day["tail_gpu_busy"] > 0  # the seeded day has jobs left running in idle tails
    assert day["reclaim"]["idle_by_hub_but_gpu_busy"] > 0
    warned_gpu = [e.get("gpu") for e in day["reclaim"]["log"] if e["event"] == "stopped"]
    assert all(g == 0 for g in warned_gpu)


def test_the_log_reads_as_the_hub_would_write_it(day):
    first = next(e for e in day["reclaim"]["log"] if e["event"] == "stopped")
    line = reclaim.log_line(first)
    assert f" stopped {first['user']}'s {first['tier']} ({first['holds']} on " in line
    assert f"for {first['for_user']}'s " in line and "; warned " in line


def test_the_day_is_the_seeds_alone(capsys):
    first = reclaim.run(quick=True)
    printed = capsys.readouterr().out
    assert reclaim.run(quick=True) == first
    assert capsys.readouterr().out == printed
    assert "the reclaim log of the day:" in printed and "  check: " in printed
