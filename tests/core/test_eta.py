"""The ETA of a waiting place: hand-computed cases, an exact reference, properties, wording."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mig_spawner.core import eta
from mig_spawner.core.eta import describe_eta, eta_seconds, eta_table

TEN_MIN = [600.0] * 5


# --------------------------------------------------------------------------- hand-computed


def test_sessions_of_one_length_give_exact_departures_then_chained_sessions():
    # two servers, 100 s and 300 s into 600 s sessions: they end in 300 s and 500 s;
    # the places that take those slices end 600 s later: 900 s and 1,100 s
    ages = [100.0, 300.0]
    got = [eta_seconds(n, ages, TEN_MIN) for n in range(1, 6)]
    assert got == [300.0, 500.0, 900.0, 1100.0, 1500.0]


def test_a_server_older_than_every_recorded_session_is_taken_to_start_over():
    assert eta_seconds(1, [700.0], TEN_MIN) == 600.0
    assert eta_seconds(2, [700.0], TEN_MIN) == 1200.0


def test_only_the_longer_sessions_say_how_long_a_server_of_that_age_has_left():
    # sessions of 100 s or 300 s, equally often; a server 150 s old is one of the 300 s ones
    history = [100.0] * 5 + [300.0] * 5
    assert eta_seconds(1, [150.0], history) == 150.0
    # the next place waits for the session that takes that slice: 150 + mean(200)
    assert eta_seconds(2, [150.0], history) == pytest.approx(350.0, rel=0.05)


def test_two_fresh_servers_hand_computed_expectations():
    history = [100.0] * 5 + [300.0] * 5
    # first departure: min of two draws from {100, 300}: 300 only if both are 300 (1/4)
    assert eta_seconds(1, [0.0, 0.0], history) == pytest.approx(0.25 * 300 + 0.75 * 100, rel=0.05)
    # second: (100,100) -> 100; (100,300) -> the chained session ends at 200 or 400, so
    # min(300, 200 | 400) = 250 on average; (300,300) -> 300: (100 + 250 + 250 + 300) / 4
    assert eta_seconds(2, [0.0, 0.0], history) == pytest.approx(225.0, rel=0.05)


def test_memoryless_sessions_the_first_of_many_ends_soon():
    """Not the smallest mean remaining life (an hour for every server here)."""
    mean = 3600.0
    history = [-mean * math.log(1 - (i + 0.5) / 500) for i in range(500)]  # exp quantiles
    running = [0.0] * 13
    first = eta_seconds(1, running, history)
    assert first == pytest.approx(mean / 13, rel=0.15)
    # the 13th of 13 exponential lives: mean * (1/13 + 1/12 + ... + 1) is no longer
    # exact (a chained session may end first), but it is far beyond the first
    assert eta_seconds(13, running, history) > 5 * first


# --------------------------------------------------------------------------- unknown


def test_unknown_without_enough_history_or_without_a_running_server():
    assert eta_seconds(1, [10.0], [600.0] * 4) is None
    assert eta_seconds(1, [10.0], [600.0] * 4, min_history=4) == 590.0
    assert eta_seconds(1, [], TEN_MIN) is None
    # garbled entries (a hand-edited ConfigMap) do not count as history
    assert eta_seconds(1, [10.0], [600.0] * 4 + [math.nan, -5.0, 0.0]) is None  # type: ignore[list-item]
    with pytest.raises(ValueError, match="position must be 1 or more"):
        eta_seconds(0, [10.0], TEN_MIN)


def test_the_answer_depends_on_the_facts_only_not_on_the_cache_or_their_order():
    history = [60.0 * (i % 17 + 1) for i in range(80)]
    ages = [30.0, 200.0, 90.0, 500.0]
    eta._CACHE.clear()
    forward = [eta_seconds(n, ages, history) for n in range(1, 40)]
    eta._CACHE.clear()
    backward = [eta_seconds(n, ages, history) for n in range(39, 0, -1)][::-1]
    assert forward == backward == eta_table(39, ages, history)
    assert eta_seconds(7, list(reversed(ages)), history) == forward[6]


# --------------------------------------------------------------------------- reference


def _exact(position: int, ages: list[float], history: list[float]) -> float:
    """The model's exact expectation by enumerating every draw (tiny cases only)."""
    m = len(history)
    firsts = []
    for a in ages:
        longer = [h - a for h in history if h > a]
        firsts.append(longer or list(history))
    total = 0.0
    for combo in itertools.product(*firsts):
        weight = math.prod(1 / len(f) for f in firsts)
        total += weight * _after(sorted(combo), position, history, m)
    return total


def _after(ends: list[float], position: int, history: list[float], m: int) -> float:
    t, rest = ends[0], ends[1:]
    if position == 1:
        return t
    return sum(_after(sorted([*rest, t + h]), position - 1, history, m) for h in history) / m


@pytest.mark.parametrize(
    ("ages", "history"),
    [
        ([0.0], [60.0, 120.0, 600.0, 60.0, 900.0]),
        ([50.0, 400.0], [60.0, 120.0, 600.0, 300.0, 900.0]),
        ([10.0, 20.0, 1000.0], [100.0, 200.0, 250.0, 700.0, 800.0]),
    ],
)
def test_within_a_few_per_cent_of_the_models_exact_expectation(ages, history):
    for position in (1, 2, 3):
        exact = _exact(position, ages, history)
        assert eta_seconds(position, ages, history) == pytest.approx(exact, rel=0.04)


# --------------------------------------------------------------------------- properties

lengths = st.floats(min_value=1.0, max_value=36_000.0, allow_nan=False)
ages_st = st.lists(st.floats(min_value=0.0, max_value=50_000.0, allow_nan=False), max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    history=st.lists(lengths, min_size=5, max_size=60),
    ages=ages_st,
    positions=st.integers(min_value=1, max_value=30),
)
def test_monotone_in_position_and_bounded_by_the_longest_sessions(history, ages, positions):
    table = eta_table(positions, ages, history)
    if not ages:
        assert table is None
        return
    assert table is not None and len(table) == positions
    assert all(a <= b for a, b in itertools.pairwise(table))  # never earlier further back
    assert all(eta_seconds(n, ages, history) == table[n - 1] for n in range(1, positions + 1))
    # the n-th slice frees no later than one slice serving n sessions back to back
    longest = max(history)
    assert all(0 <= t <= n * longest * (1 + 1e-9) for n, t in enumerate(table, 1))


@settings(max_examples=40, deadline=None)
@given(
    history=st.lists(lengths, min_size=5, max_size=40),
    tens=st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=8),
    scale=st.sampled_from([2.0, 4.0, 64.0]),
    position=st.integers(min_value=1, max_value=15),
)
def test_a_change_of_unit_scales_the_eta(history, tens, scale, position):
    ages = [10.0 * t for t in tens]  # whole tens of seconds: read as they are
    base = eta_seconds(position, ages, history)
    scaled = eta_seconds(position, [a * scale for a in ages], [h * scale for h in history])
    assert scaled == pytest.approx(base * scale, rel=1e-12)  # powers of two: exact


def test_ages_are_read_to_ten_seconds_so_one_refresh_simulates_once():
    """A hub asks for each place with ``now - started``, ``now`` a little later each time."""
    eta._CACHE.clear()
    first = eta_seconds(1, [100.0, 300.0], TEN_MIN)
    assert eta_seconds(1, [299.2, 101.3], TEN_MIN) == first == 300.0
    assert len(eta._CACHE) == 1
    assert eta_seconds(1, [100.0, 320.0], TEN_MIN) == 280.0  # 20 s older: other facts
    assert len(eta._CACHE) == 2


# --------------------------------------------------------------------------- wording


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "time unknown"),
        (math.inf, "time unknown"),
        (0.0, "less than a minute"),
        (59.4, "less than a minute"),
        (60.0, "about 1 min"),
        (360.0, "about 6 min"),
        (389.0, "about 6 min"),
        (3569.0, "about 59 min"),
        (3590.0, "about 1 h"),
        (4200.0, "about 1 h 10 min"),
        (4330.0, "about 1 h 10 min"),
        (7190.0, "about 2 h"),
        (3 * 3600 + 25 * 60.0, "about 3 h 25 min"),
    ],
)
def test_describe_eta(seconds, text):
    assert describe_eta(seconds) == text


def test_positions_beyond_the_simulated_ones_follow_the_long_run_rate():
    # one slice, sessions of 600 s: the n-th place's slice frees after n x 600 s, whether
    # simulated (the first 2k + 8) or added at one mean session per slice after that
    assert eta.simulated_positions(1) == 10
    assert eta_table(25, [0.0], TEN_MIN) == [600.0 * n for n in range(1, 26)]
    # two slices, 100 s and 300 s into them: beyond the simulated 12, 300 s more a place
    table = eta_table(20, [100.0, 300.0], TEN_MIN)
    assert table[12:] == [table[11] + 300.0 * j for j in range(1, 9)]


def test_eta_many_answers_as_eta_seconds_does_for_each_position():
    ages, history = [30.0, 200.0, 90.0], [60.0 * (i % 11 + 1) for i in range(40)]
    got = eta.eta_many([3, 1, 40, 2], ages, history)
    assert got == [eta_seconds(n, ages, history) for n in (3, 1, 40, 2)]
    assert eta.eta_many([1, 2], ages, history[:4]) == [None, None]
    with pytest.raises(ValueError, match="1 or more"):
        eta.eta_many([1, 0], ages, history)
