"""How long until a waiting place gets its slice: an ETA from the tier's own history.

Pure (stdlib only, no clock, no I/O): the hub passes the facts, this module answers.

The model
---------
``history`` holds the lengths, in seconds, of the tier's recent sessions that ended (a
claim's bound -> ended). ``running_ages`` are the ages of the servers that now hold the
slices the tier could be granted. Place ``n`` of the tier's line gets the slice that frees
``n``-th from now: the ``n - 1`` places ahead take the first ``n - 1``.

1. A running server of age ``a`` ends after a remaining time drawn from the history's
   sessions *longer than* ``a``, less ``a`` (the empirical distribution of its remaining
   life, given that it has lasted ``a``). A server older than every recorded session
   is taken to start over: its remaining time is drawn from the whole history (nothing
   recorded says how much longer such a server lasts; see "Limits"). Ages are read to
   the nearest ``AGE_STEP`` (10) seconds.
2. A slice that frees goes to the place ahead, whose new session lasts a length drawn
   from the whole history; when it ends, the slice frees again. So a position beyond
   the running count waits for chained sessions: ``k`` slices serve the line like ``k``
   counters serve a queue.
3. The ETA of position ``n`` is the *mean*, over ``SAMPLES`` simulated futures, of the
   time at which the ``n``-th slice frees. The futures' draws are stratified (at each
   draw the futures share the strata of [0, 1), in an order drawn afresh) from a
   ``random.Random`` seeded with a constant, so the answer is a pure function of
   its arguments: the same facts give the same ETA. The mean of the ``n``-th departure
   is not the ``n``-th smallest mean remaining life: with memoryless sessions every
   server's mean remaining life is the same hour, yet with 13 servers running the first
   ends after about 60/13 min.
4. Positions beyond ``2k + 8`` (``k`` servers running) are not simulated: by then every
   slice serves one session after another, and slices free at the long-run rate of ``k``
   per mean session (the renewal theorem), added on from the last simulated position.

``None`` (shown as "time unknown") when the tier has fewer than ``min_history`` recorded
sessions, or when no running server holds a slice the tier could use (the line then waits
for a node, which no history predicts).

Limits (docs/waiting-eta.md says the same)
-----------------------------------------
- Departures are taken as independent and every freed slice as usable by this line's
  places in order. Other tiers' lines that can use the same slices (a 1g tier falling
  back onto a 2g) and teams with fewer running servers going first (the line's fairness
  rule) can take a slice first, so the ETA is optimistic when several lines compete.
- The history is the tier's recent sessions, all weighted alike: a change in how people
  work (a new culler timeout, a course's deadline) shows only as the history turns over.
- A server older than every recorded session is modelled as starting over; sessions
  killed at a fixed limit (a culler) make that pessimistic.
- Places that leave the line (cancel, ``max_wait``) move everyone behind them up: the
  ETA at enqueue time does not foresee them and so errs long on a busy line.
- The answer is a Monte Carlo mean of up to ``SAMPLES`` futures: within a few per cent
  of the model's exact expectation on the cases the tests enumerate, exact when every
  recorded session has the same length.
- Only the time until the slice frees: the pod's start (image pull, scheduling) comes on
  top.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections.abc import Sequence
from heapq import heapify, heapreplace

#: simulated futures averaged per ETA (fewer when very many servers run: the n-th
#: departure of many slices varies little, relative to its size)
SAMPLES = 128
MIN_SAMPLES = 32
#: about this many draws per simulation: ``samples x (running + simulated positions)``
DRAW_BUDGET = 8_192
#: ages are read to the nearest this many seconds (an ETA is good to minutes, not to the
#: microseconds between two calls of one refresh)
AGE_STEP = 10.0
#: the seed of the draws: a constant, so the same facts give the same ETA
SEED = 20


def simulated_positions(running: int) -> int:
    """Positions simulated with ``running`` servers; the rest follow the long-run rate."""
    return 2 * running + 8


#: the last few simulations, by (running ages, history, min_history)
_CACHE: dict[tuple, tuple[list[float], float] | None] = {}
_MISSING = object()
_CACHE_SIZE = 16


def _ages(running_ages: Sequence[float]) -> tuple[float, ...]:
    """The ages as the model reads them: to the nearest ``AGE_STEP`` seconds, sorted (the
    order given is no fact). A hub that asks for each place in turn, each time with
    ``now - started``, then asks with the same facts and gets the same simulation."""
    return tuple(sorted(AGE_STEP * round(max(a, 0.0) / AGE_STEP) for a in _clean(running_ages)))


def _clean(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]


def _simulate(
    ages: tuple[float, ...], history: Sequence[float], min_history: int
) -> tuple[list[float], float] | None:
    """(the ETAs of the first ``simulated_positions(k)`` positions, the seconds between
    two slices freeing after them), or None without enough facts."""
    lengths = sorted(v for v in _clean(history) if v > 0)
    if len(lengths) < max(min_history, 1) or not ages:
        return None
    k, m = len(ages), len(lengths)
    samples = MIN_SAMPLES
    while samples * 2 <= min(SAMPLES, DRAW_BUDGET // (3 * k)):
        samples *= 2  # a power of two: the strata below are permuted by odd multipliers
    rng = random.Random(SEED)
    mask = samples - 1

    def strata() -> list[float]:
        """One draw per future, stratified: future ``s`` gets the middle of stratum
        ``(a * s + b) mod samples`` of [0, 1), with ``a`` odd and ``b`` drawn afresh for
        every draw (a randomly shifted lattice: every future's draws are independent and
        uniform, and together the futures cover [0, 1) evenly, so their mean is far
        steadier than that of independent draws)."""
        a, b = rng.randrange(1, samples, 2), rng.randrange(samples)
        return [(((a * s + b) & mask) + 0.5) / samples for s in range(samples)]

    futures: list[list[float]] = [[] for _ in range(samples)]
    for a in ages:
        lo = bisect.bisect_right(lengths, a)  # the recorded sessions longer than ``a``
        for ends, u in zip(futures, strata(), strict=True):
            if lo < m:  # a longer session is on record: the rest of one of them
                ends.append(lengths[lo + int(u * (m - lo))] - a)
            else:  # older than any on record: as if it started over
                ends.append(lengths[int(u * m)])
    for ends in futures:
        heapify(ends)
    head = []
    for _ in range(simulated_positions(k)):
        total = 0.0
        for ends, u in zip(futures, strata(), strict=True):
            t = ends[0]
            total += t
            heapreplace(ends, t + lengths[int(u * m)])  # the place's own session
        head.append(total / samples)
    # Beyond: every slice serves one session after another, so slices free at the
    # long-run rate of ``k`` per mean session (the renewal theorem).
    return head, statistics.fmean(lengths) / k


def _at(simulation: tuple[list[float], float], position: int) -> float:
    head, step = simulation
    if position <= len(head):
        return head[position - 1]
    return head[-1] + step * (position - len(head))


def eta_table(
    positions: int,
    running_ages: Sequence[float],
    history: Sequence[float],
    *,
    min_history: int = 5,
) -> list[float] | None:
    """ETAs in seconds for positions ``1 .. positions`` (index 0 is position 1), or None."""
    simulation = _simulate(_ages(running_ages), history, min_history)
    if simulation is None:
        return None
    return [_at(simulation, n) for n in range(1, positions + 1)]


def eta_seconds(
    position: int,
    running_ages: Sequence[float],
    history: Sequence[float],
    *,
    min_history: int = 5,
) -> float | None:
    """The expected seconds until the slice for place ``position`` (1 = head) frees.

    ``running_ages``: ages in seconds of the running servers holding slices the place's
    tier could use; ``history``: the tier's ended session lengths in seconds. None when
    the history has fewer than ``min_history`` sessions or nothing runs that could free.
    The model and its limits are in this module's docstring.

    One simulation answers every position of a tier; the last few are kept, so a hub
    that refreshes the ETAs of a line of 1,000 places with the same facts simulates once.
    """
    if position < 1:
        raise ValueError(f"position must be 1 or more, not {position}")
    simulation = _simulation(running_ages, history, min_history)
    return None if simulation is None else _at(simulation, position)


def eta_many(
    positions: Sequence[int],
    running_ages: Sequence[float],
    history: Sequence[float],
    *,
    min_history: int = 5,
) -> list[float | None]:
    """:func:`eta_seconds` for several positions of one tier (the same facts): one look-up."""
    if any(p < 1 for p in positions):
        raise ValueError(f"positions must be 1 or more, not {min(positions)}")
    simulation = _simulation(running_ages, history, min_history)
    return [None if simulation is None else _at(simulation, p) for p in positions]


def _simulation(
    running_ages: Sequence[float], history: Sequence[float], min_history: int
) -> tuple[list[float], float] | None:
    """The simulation of these facts, kept for the next few calls. The key is hashed once
    per call: hashing a history of 500 lengths is most of a cached call's cost."""
    ages = _ages(running_ages)
    key = (ages, tuple(history), min_history)
    simulation = _CACHE.get(key, _MISSING)
    if simulation is _MISSING:
        simulation = _CACHE[key] = _simulate(ages, history, min_history)
        while len(_CACHE) > _CACHE_SIZE:
            del _CACHE[next(iter(_CACHE))]  # the oldest
    return simulation  # type: ignore[return-value]


def describe_eta(seconds: float | None) -> str:
    """The ETA as users read it: 'time unknown', 'less than a minute', 'about 6 min',
    'about 1 h 10 min', 'about 3 h'.

    Minutes are rounded to the nearest one under an hour; from an hour on, to the nearest
    5 minutes (an estimate of hours is not good to the minute).
    """
    if seconds is None or not math.isfinite(seconds):
        return "time unknown"
    if seconds < 60:
        return "less than a minute"
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"about {minutes} min"
    minutes = 5 * round(seconds / 300)
    hours, rest = divmod(minutes, 60)
    return f"about {hours} h {rest} min" if rest else f"about {hours} h"
