"""The layout MILP against a brute force (every layout choice, the rest an LP) on small cases."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import numpy as np
import pytest
from scipy.optimize import linprog

from mig_spawner.cli.advise_solver import CHANGE_PENALTY, FALLBACK_PENALTY, NodeVar, Problem, solve
from mig_spawner.core.catalog import default_catalog
from mig_spawner.core.layouts import Layout, enumerate_layouts, is_valid

H100 = default_catalog().model("h100-80gb")
A30 = default_catalog().model("a30")


def served(problem: Problem, choice: dict[str, list[Layout]]) -> float:
    """The MILP's objective for a fixed layout choice: an LP over the z variables."""
    supply: dict[tuple[str, str], int] = {}
    for n in problem.nodes:
        for lay in choice[n.name]:
            for p, k in lay.counts:
                supply[n.model, p] = supply.get((n.model, p), 0) + k
    cols, cost, rows, rhs = [], [], [], []
    for w, peaks in enumerate(problem.peaks):
        for cls, d in peaks.items():
            mine = []
            for model, profile, step in problem.chains[cls]:
                if (model, profile) in supply:
                    cols.append((w, model, profile))
                    cost.append(-(1 - FALLBACK_PENALTY * step))
                    mine.append(len(cols) - 1)
            rows.append(mine)
            rhs.append(d)
    for w in range(len(problem.peaks)):
        for key, k in supply.items():
            rows.append([j for j, c in enumerate(cols) if c == (w, *key)])
            rhs.append(k)
    if not cols:
        return 0.0
    a = np.zeros((len(rows), len(cols)))
    for i, js in enumerate(rows):
        a[i, js] = 1
    res = linprog(cost, A_ub=a, b_ub=rhs, bounds=(0, None), method="highs")
    changed = sum(Counter(choice[n.name]) != Counter(n.current) for n in problem.nodes)
    return -res.fun - CHANGE_PENALTY * changed


@pytest.mark.parametrize("seed", [1, 2])
def test_milp_matches_brute_force_on_small_instances(seed):
    rng = random.Random(seed)
    h_layouts = enumerate_layouts(H100)[::3]  # every third layout: a 10-layout choice
    a_layouts = enumerate_layouts(A30)
    nodes = [
        NodeVar("h", "h100-80gb", (Layout.of(H100, {"7g.80gb": 1}),) * 2, False),
        NodeVar("a", "a30", (Layout.of(A30, {"4g.24gb": 1}),), False),
    ]
    chains = {
        "small": [("h100-80gb", "1g.10gb", 0), ("a30", "1g.6gb", 0), ("h100-80gb", "2g.20gb", 1)],
        "mid": [("h100-80gb", "3g.40gb", 0), ("a30", "4g.24gb", 0), ("h100-80gb", "4g.40gb", 1)],
        "big": [("h100-80gb", "7g.80gb", 0)],
    }
    peaks = [{c: rng.randint(0, 6) for c in chains} for _ in range(3)]
    problem = Problem(nodes, {"h100-80gb": h_layouts, "a30": a_layouts}, chains, peaks)
    solution = solve(problem)
    best = max(
        served(problem, {"h": list(hs), "a": [a]})
        for hs in itertools.combinations_with_replacement(h_layouts, 2)
        for a in a_layouts
    )
    assert solution.objective == pytest.approx(best, rel=2e-4)
    assert served(problem, solution.layouts) == pytest.approx(best, rel=2e-4)
    assert all(is_valid(lay) for lays in solution.layouts.values() for lay in lays)


def test_fixed_nodes_and_the_change_limit():
    current = (Layout.of(H100, {"7g.80gb": 1}),)
    nodes = [NodeVar(f"n{i}", "h100-80gb", current, i == 0) for i in range(3)]
    chains = {"small": [("h100-80gb", "1g.10gb", 0)]}
    problem = Problem(nodes, {"h100-80gb": enumerate_layouts(H100)}, chains, [{"small": 20}])
    free = solve(problem)
    assert free.layouts["n0"] == list(current)  # fixed
    assert free.changed == ["n1", "n2"] and free.objective == pytest.approx(14 - 2e-3)
    problem.max_changed = 1
    limited = solve(problem)
    assert len(limited.changed) == 1 and limited.objective == pytest.approx(7 - 1e-3)
