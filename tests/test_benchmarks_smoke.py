"""The benchmark code runs, at tiny sizes (structure of the results only, no timings)."""

from __future__ import annotations

from benchmarks import decisions, synthetic, utilisation


def test_decision_benchmark_reports_every_tier_and_the_naive_baseline():
    r = decisions.bench_size(12, samples=5, naive_samples=1)
    assert r["nodes"] == 12 and r["gpus"] == 96 and r["pods"] > 0
    assert set(r["decide"]) == {"notebook", "medium", "training", "full", "pool"}
    for figures in r["decide"].values():
        assert figures["n"] == 5 and figures["p99_us"] >= figures["median_us"] > 0
    assert r["naive"]["n"] == 1 and r["form"]["n"] == 5


def test_the_synthetic_hub_pods_are_the_hubs_own_and_count_toward_quotas():
    """Marked as the spawner marks them: else the benchmark's quotas would count nothing."""
    node_objs = synthetic.nodes(3)
    state = decisions.build(node_objs, synthetic.pods(node_objs))
    ours = [p for p in state.pods.values() if p.managed]
    assert ours and all(p.team in synthetic.TEAMS and p.charge.compute_slices for p in ours)
    team = ours[0].team
    used = state.usage(team, "")
    assert used.servers == sum(p.team == team for p in ours)
    assert used.compute_slices == sum(p.charge.compute_slices for p in ours if p.team == team)


def test_event_and_memory_benchmarks_report_rates_and_sizes():
    assert decisions.bench_events(5, 50)["pod_events_per_s"] > 0
    assert decisions.bench_memory(5)["state_mb"] > 0


def test_utilisation_replays_three_policies_through_the_admission_code():
    # (the exact optimum needs scipy, a `bench` extra: `make bench` runs it)
    requests = utilisation.trace(30, seed=1)
    modes = {m: utilisation.replay(m, requests) for m in ("fixed", "fallback", "fallback+quotas")}
    assert modes["fixed"]["fallbacks"] == 0  # no fallback under a fixed profile list
    for m in modes.values():
        assert m["admitted"] + m["turned_away"] == 30
        assert 0 <= m["mean_slice_utilisation_pct"] <= 100
    # on this seeded trace the quotas turn away more than the same chains without them
    assert modes["fallback+quotas"]["admitted"] <= modes["fallback"]["admitted"]


def test_advise_benchmark_reports_the_three_figures_and_solver_times(capsys):
    from benchmarks import advise

    out = advise.run(quick=True)
    (seeded,) = out["seeded"]
    assert seeded["requests"] == 40
    for key in ("current_served", "advised_served", "optimum_current_layout"):
        assert 0 < seeded[key] <= 40
    assert seeded["optimum_current_layout"] >= seeded["current_served"]  # an optimum
    assert seeded["advised_served"] >= seeded["current_served"]  # never worse
    (scaled,) = out["scale"]
    assert scaled["gpus"] == 16 and all(m["seconds"] > 0 for m in scaled["milp"])
    assert "exact optimum of the current layout" in capsys.readouterr().out


def test_gc_benchmark_times_every_collection_in_each_mode():
    from benchmarks import gcpause

    r = gcpause.bench_gc(8, steps=300)
    assert r["tracked_objects"] > r["pods"] > 0 and r["reflector_pods"] > 0
    assert r["hub_modules_imported"]  # the heap holds what a hub imports
    assert len(r["full_collection_ms"]) == 3 and all(x >= 0 for x in r["full_collection_ms"])
    assert set(r["modes"]) == set(gcpause.MODES)
    off, on = r["modes"]["gc_off"], r["modes"]["gc_on"]
    # with the collector disabled no collection ran; with it on, the hub's allocations
    # (a few thousand objects kept for a while) made the youngest generation collect
    assert all(off["collections"][g]["count"] == 0 for g in "012")
    assert on["collections"]["0"]["count"] > 0
    for m in r["modes"].values():
        assert m["decide"]["n"] == m["steps"] == 300
        assert m["decide"]["max_us"] >= m["decide"]["p99_us"] >= m["decide"]["p50_us"] > 0
        assert m["tail_decisions_with_a_collection"] <= m["tail_decisions"]
    assert r["modes"]["frozen_threshold"]["threshold0"] == gcpause.THRESHOLD0
    assert set(r["verdict"]) >= {"pauses_dominate_p99", "decide_cpu_p99_ratio_on_vs_off"}


def test_waitline_benchmark_replays_refusal_retries_and_the_line(capsys):
    from benchmarks import waitline

    out = waitline.run(quick=True)
    (trace,) = out["traces"]
    n = trace["requests"]
    assert n == 40
    for mode in ("refuse", "retry", "line"):
        m = trace[mode]
        assert 0 <= m["served_within_10_min_pct"] <= m["served_pct"] <= 100
    assert trace["refuse"]["mean_wait_min"] == 0  # refused or started at once
    for w, line in [(waitline.MAX_WAIT, trace["line"]), *trace["line_max_wait"].items()]:
        # every request ends: served, timed out after max_wait, or refused at once
        assert line["served"] + line["timed_out"] + line["refused_at_once"] == n
        assert line["longest_wait_min"] <= w / 60
    eta = trace["line"]["eta"]
    assert eta["compared"] + eta["unknown"] <= eta["waited"]
    cost = out["pass_cost"]
    assert cost["running"] > 0 and cost["waiting"] == 200
    assert cost["admitted_per_pass"] == [1]  # one freed slice, one admission
    for figure in (cost["pass_us"], cost["pass_and_etas_us"]):
        assert figure["n"] == 20 and figure["p99"] >= figure["median"] > 0
    printed = capsys.readouterr().out
    assert "ETA at enqueue: median |ETA - wait|" in printed
    assert "KubeSpawner: no waiting line" in printed
