"""The benchmarks keep running: each prints its figures on a tiny cluster (no timing asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_operations.py"


def test_operations_benchmark_prints_every_figure(capsys):
    spec = importlib.util.spec_from_file_location("bench_operations", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--nodes", "3", "--pods", "20", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "cluster: 3 nodes, 24 GPUs, 96 slices, 20 pods" in out
    for figure in (
        "node_maps (all nodes)",
        "capacity + team rows",
        "/hub/metrics",
        "/services/mig",
    ):
        assert figure in out and " ms" in out
