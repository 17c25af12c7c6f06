"""The layout MILP: which valid MIG layout each GPU should have to serve the demand's peaks.

Solved with SciPy's HiGHS (``scipy.optimize.milp``): on PyPI as wheels for every platform
we test (no native build, no licence), exact branch-and-cut with a reported optimality gap,
so the answer is the optimum of the model or comes with a proven bound.

The model. Time is cut into ``windows``; ``d[w][c]`` is the peak number of concurrent
sessions of demand class ``c`` (a tier) in window ``w``. Integer ``x[n][l]`` is the number
of GPUs of node ``n`` given layout ``l`` (only layouts valid for the node's GPU model, from
the catalog's placements), summing to the node's GPUs. Continuous ``z[w][c][s]`` is how
much of class ``c`` slice type ``s`` (a model's profile in the class's fallback chain)
serves in window ``w``: at most ``d[w][c]`` per class, at most the slices of ``s`` the
layouts give. Maximise ``sum z`` (less 1 % per fallback step, so exact profiles win ties),
then fewer nodes changed (binary ``u[n]``; ``--max-nodes-changed`` bounds ``sum u``).
Nodes that must not change have ``x`` fixed to their current layouts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..core.layouts import Layout

FALLBACK_PENALTY = 0.01
CHANGE_PENALTY = 1e-3


@dataclass(frozen=True)
class NodeVar:
    name: str
    model: str  # catalog key
    current: tuple[Layout, ...]  # per GPU
    fixed: bool  # may not change (running GPU pods, or not MIG-advisable)


@dataclass
class Problem:
    nodes: list[NodeVar]
    layouts: dict[str, list[Layout]]  # model -> candidate layouts
    #: class -> [(model, profile, step)] the class may use, in chain order
    chains: dict[str, list[tuple[str, str, int]]]
    peaks: list[dict[str, int]]  # per window: class -> peak concurrency
    max_changed: int | None = None
    #: instead of ``peaks``: every session (class, start, end), each served whole or not,
    #: capacity checked at every arrival (the exact offline model; for small traces)
    sessions: list[tuple[str, float, float]] | None = None


@dataclass
class Solution:
    layouts: dict[str, list[Layout]]  # node -> per-GPU layouts (multiset; order by assign)
    objective: float
    bound: float
    gap: float
    seconds: float
    status: str
    variables: int
    constraints: int
    changed: list[str] = field(default_factory=list)


def _counts(layouts) -> dict[Layout, int]:
    out: dict[Layout, int] = {}
    for lay in layouts:
        out[lay] = out.get(lay, 0) + 1
    return out


def solve(problem: Problem, *, time_limit: float = 60.0) -> Solution:
    try:
        import numpy as np
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import coo_array
    except ImportError:
        from .snapshot import InputError

        raise InputError(
            "advise needs SciPy: pip install 'jupyterhub-mig-spawner[advise]'"
        ) from None

    started = time.perf_counter()
    cols_lo: list[float] = []
    cols_hi: list[float] = []
    cost: list[float] = []
    integ: list[int] = []

    def var(lo, hi, c, integer):
        cols_lo.append(lo)
        cols_hi.append(hi)
        cost.append(c)
        integ.append(1 if integer else 0)
        return len(cost) - 1

    rows, cols, vals, r_lo, r_hi = [], [], [], [], []

    def constraint(terms, lo, hi):
        r = len(r_lo)
        for j, v in terms:
            rows.append(r)
            cols.append(j)
            vals.append(v)
        r_lo.append(lo)
        r_hi.append(hi)

    x: dict[tuple[int, Layout], int] = {}
    supply: dict[tuple[str, str], list[tuple[int, int]]] = {}  # (model, profile) -> (col, n)
    for i, node in enumerate(problem.nodes):
        gpus = len(node.current)
        cur = _counts(node.current)
        options = list(dict.fromkeys([*problem.layouts.get(node.model, []), *cur]))
        if node.fixed:
            options = list(cur)
        for lay in options:
            n = cur.get(lay, 0)
            col = var(n if node.fixed else 0, n if node.fixed else gpus, 0.0, True)
            x[i, lay] = col
            for profile, k in lay.counts:
                supply.setdefault((node.model, profile), []).append((col, k))
        constraint([(x[i, lay], 1) for lay in options], gpus, gpus)
        if not node.fixed:
            u = var(0, 1, CHANGE_PENALTY, True)
            for lay in options:
                n = cur.get(lay, 0)
                constraint([(x[i, lay], 1), (u, -gpus)], -np.inf, n)
                constraint([(x[i, lay], -1), (u, -gpus)], -np.inf, -n)
            x[i, None] = u  # type: ignore[index]
    if problem.max_changed is not None:
        us = [(col, 1) for (i, lay), col in x.items() if lay is None]
        if us:
            constraint(us, -np.inf, problem.max_changed)
    if problem.sessions is not None:
        _sessions(problem, var, constraint, supply)
    for peaks in [] if problem.sessions is not None else problem.peaks:
        use: dict[tuple[str, str], list[int]] = {}
        for cls, demand in peaks.items():
            if demand <= 0:
                continue
            terms = []
            for model, profile, step in problem.chains.get(cls, []):
                if (model, profile) not in supply:
                    continue
                col = var(0, demand, -(1 - FALLBACK_PENALTY * step), False)
                terms.append((col, 1))
                use.setdefault((model, profile), []).append(col)
            if terms:
                constraint(terms, -np.inf, demand)
        for key, zs in use.items():
            constraint([(z, 1) for z in zs] + [(c, -k) for c, k in supply[key]], -np.inf, 0)
    n_vars, n_rows = len(cost), len(r_lo)
    matrix = coo_array((vals, (rows, cols)), shape=(n_rows, n_vars)).tocsr()
    res = milp(
        c=np.array(cost),
        constraints=LinearConstraint(matrix, r_lo, r_hi),
        integrality=np.array(integ),
        bounds=Bounds(cols_lo, cols_hi),
        options={"time_limit": time_limit, "mip_rel_gap": 1e-4},
    )
    if res.x is None:
        raise RuntimeError(f"the layout MILP found no solution: {res.message}")
    values = np.round(res.x).astype(int)
    layouts: dict[str, list[Layout]] = {}
    changed = []
    for i, node in enumerate(problem.nodes):
        chosen = _counts([])
        for (j, lay), col in x.items():
            if j == i and lay is not None and values[col] > 0:
                chosen[lay] = int(values[col])
        layouts[node.name] = assign(list(node.current), chosen)
        if layouts[node.name] != list(node.current):
            changed.append(node.name)
    bound = float(-getattr(res, "mip_dual_bound", res.fun) if res.fun is not None else 0)
    return Solution(
        layouts=layouts,
        objective=float(-res.fun),
        bound=bound,
        gap=float(getattr(res, "mip_gap", 0.0) or 0.0),
        seconds=time.perf_counter() - started,
        status=res.message,
        variables=n_vars,
        constraints=n_rows,
        changed=changed,
    )


def _sessions(problem: Problem, var, constraint, supply) -> None:
    """y[i][s] binary: session i served on slice type s for its whole length; at each
    arrival the sessions running on s fit the slices of s."""
    ys: list[list[tuple[int, tuple[str, str]]]] = []
    for cls, _start, _end in problem.sessions:
        mine = []
        for model, profile, step in problem.chains.get(cls, []):
            if (model, profile) in supply:
                mine.append((var(0, 1, -(1 - FALLBACK_PENALTY * step), True), (model, profile)))
        if mine:
            constraint([(col, 1) for col, _ in mine], 0, 1)
        ys.append(mine)
    order = sorted(range(len(problem.sessions)), key=lambda i: problem.sessions[i][1])
    for i in order:
        t = problem.sessions[i][1]
        active = [j for j in order if problem.sessions[j][1] <= t < problem.sessions[j][2]]
        use: dict[tuple[str, str], list[int]] = {}
        for j in active:
            for col, key in ys[j]:
                use.setdefault(key, []).append(col)
        for key, cols in use.items():
            constraint([(c, 1) for c in cols] + [(c, -k) for c, k in supply[key]], -1e30, 0)


def assign(current: list[Layout], chosen: dict[Layout, int]) -> list[Layout]:
    """Per-GPU layouts with ``chosen``'s counts, each GPU keeping its layout where it can."""
    left = dict(chosen)
    out: list[Layout | None] = []
    for lay in current:
        if left.get(lay, 0) > 0:
            left[lay] -= 1
            out.append(lay)
        else:
            out.append(None)
    rest = [lay for lay, n in left.items() for _ in range(n)]
    return [lay if lay is not None else rest.pop(0) for lay in out]
