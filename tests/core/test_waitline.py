"""The waiting line (core/waitline.py) against a straightforward reference.

The reference orders by brute force: it groups the places by how many their team runs,
then takes, for each group from fewest running up, the places one at a time by the
earliest request (key as a tie-break), and numbers each tier separately. Any sequence of
joins, leaves and changes of the running counts must give the same order, positions and
lengths, and the persisted document must read back to the same line.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mig_spawner.core.waitline import (
    HISTORY_LIMIT,
    Line,
    Place,
    add_history,
    history_from_dict,
)

TEAMS = ("", "vision", "nlp", "bio")
TIERS = ("notebook", "training")


def reference_order(
    places: dict[str, Place], running: dict[str, int], narrow: dict[str, int] | None = None
) -> list[str]:
    """The order by its definition, by repeated selection (no sort key shared with Line):
    among the teams running fewest, each team's first-come place; of those, the narrowest
    tier, then the first come, then the key."""
    narrow = narrow or {}
    left = dict(places)
    out: list[str] = []
    while left:
        fewest = min(running.get(p.team, 0) for p in left.values())
        heads = []
        for team in {p.team for p in left.values() if running.get(p.team, 0) == fewest}:
            mine = [p for p in left.values() if p.team == team]
            first = mine[0]
            for p in mine[1:]:
                if p.requested_at < first.requested_at or (
                    p.requested_at == first.requested_at and p.key < first.key
                ):
                    first = p
            heads.append(first)
        best = heads[0]
        for p in heads[1:]:
            a = (narrow.get(p.tier, 0), p.requested_at, p.key)
            b = (narrow.get(best.tier, 0), best.requested_at, best.key)
            if a < b:
                best = p
        out.append(best.key)
        del left[best.key]
    return out


def reference_positions(places, running, narrow=None) -> dict[str, int]:
    out = {}
    for tier in TIERS:
        n = 0
        for key in reference_order(places, running, narrow):
            if places[key].tier == tier:
                n += 1
                out[key] = n
    return out


places_st = st.builds(
    Place,
    key=st.sampled_from([f"ns/jupyter-u{i}" for i in range(12)]),
    user=st.sampled_from(["ann", "bob", "cy"]),
    server_name=st.sampled_from(["", "gpu"]),
    tier=st.sampled_from(TIERS),
    team=st.sampled_from(TEAMS),
    groups=st.sampled_from([(), ("vision",), ("nlp", "vision")]),
    # few distinct times: ties are common and the key must break them
    requested_at=st.integers(0, 5).map(float),
    deadline=st.integers(5, 100).map(float),
)
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("join"), places_st),
        st.tuples(st.just("leave"), st.integers(0, 11)),
        st.tuples(st.just("running"), st.dictionaries(st.sampled_from(TEAMS), st.integers(0, 3))),
        st.tuples(st.just("narrow"), st.dictionaries(st.sampled_from(TIERS), st.integers(1, 9))),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops_st)
def test_line_matches_reference(ops):
    line = Line()
    places: dict[str, Place] = {}
    running: dict[str, int] = {}
    narrow: dict[str, int] = {}
    for op, arg in ops:
        if op == "join":
            earlier = line.add(arg)
            assert earlier == places.get(arg.key)
            places[arg.key] = arg
        elif op == "leave":
            key = f"ns/jupyter-u{arg}"
            assert line.remove(key) == places.pop(key, None)
        elif op == "narrow":
            narrow = dict(arg)
            line.set_narrowness(narrow)
        else:
            running = dict(arg)
            line.set_running(running)
        assert [p.key for p in line.order()] == reference_order(places, running, narrow)
        assert line.positions() == reference_positions(places, running, narrow)
        assert len(line) == len(places)
        lengths = {t: sum(p.tier == t for p in places.values()) for t in TIERS}
        assert line.lengths() == {t: n for t, n in lengths.items() if n}
        for key in places:
            assert line.position(key) == reference_positions(places, running, narrow)[key]
    # FIFO within a team, whatever the running counts
    order = line.order()
    for team in TEAMS:
        mine = [p for p in order if p.team == team]
        assert mine == sorted(mine, key=lambda p: (p.requested_at, p.key))
    # the document reads back to the same line (through JSON, as the ConfigMap stores it)
    doc = json.loads(json.dumps(line.to_dict(hub="h", saved_at=9.0)))
    back = Line.from_dict(doc)
    back.set_running(running)
    back.set_narrowness(narrow)
    assert back.order() == line.order()
    assert [e["position"] for e in doc["places"]] == [
        line.positions()[e["key"]] for e in doc["places"]
    ]


def test_team_with_fewer_running_goes_first():
    early_busy = Place("ns/a", "ann", "", "notebook", "vision", ("vision",), 1.0, 99.0)
    late_idle = Place("ns/b", "bob", "", "notebook", "nlp", ("nlp",), 2.0, 99.0)
    line = Line([early_busy, late_idle], running={"vision": 2})
    assert [p.key for p in line.order()] == ["ns/b", "ns/a"]
    assert line.position("ns/b") == 1 and line.position("ns/a") == 2
    line.set_running({"vision": 0})
    assert [p.key for p in line.order()] == ["ns/a", "ns/b"]


def test_positions_are_per_tier():
    line = Line(
        [
            Place("ns/a", "ann", "", "notebook", "", (), 1.0, 9.0),
            Place("ns/b", "bob", "", "training", "", (), 2.0, 9.0),
            Place("ns/c", "cy", "", "notebook", "", (), 3.0, 9.0),
        ]
    )
    assert line.positions() == {"ns/a": 1, "ns/b": 1, "ns/c": 2}
    assert line.expired(9.0) == line.order() and line.expired(8.9) == []


def test_document_shape_and_eta():
    line = Line([Place("ns/a", "ann", "", "notebook", "vision", ("vision",), 1.0, 9.0)])
    doc = line.to_dict(
        hub="hub1", saved_at=5.0, history={"notebook": [60.0]}, eta=lambda place, n: 360.0 * n
    )
    assert doc == {
        "version": 1,
        "hub": "hub1",
        "saved_at": 5.0,
        "places": [
            {
                "key": "ns/a",
                "user": "ann",
                "server_name": "",
                "tier": "notebook",
                "team": "vision",
                "groups": ["vision"],
                "requested_at": 1.0,
                "deadline": 9.0,
                "position": 1,
                "eta_seconds": 360.0,
            }
        ],
        "history": {"notebook": [60.0]},
    }
    assert history_from_dict(doc) == {"notebook": [60.0]}


@pytest.mark.parametrize(
    "doc, match",
    [
        ([], "must be a mapping"),
        ({"version": 2, "places": []}, "version 2"),
        ({"version": 1, "places": {}}, "places must be a list"),
        ({"version": 1, "places": [{"key": "ns/a"}]}, r"places\[0\]\.user"),
        (
            {"version": 1, "places": [{"key": "a", "user": "u", "tier": "t", "requested_at": "x"}]},
            r"places\[0\]\.requested_at",
        ),
        (
            {"version": 1, "places": [{"key": "a", "user": "u", "tier": "t", "groups": "g"}]},
            r"places\[0\]\.groups",
        ),
    ],
)
def test_garbled_documents_are_named(doc, match):
    with pytest.raises(ValueError, match=match):
        Line.from_dict(doc)


def test_garbled_history_is_named():
    with pytest.raises(ValueError, match=r"history\['nb'\]\[1\]"):
        history_from_dict({"version": 1, "places": [], "history": {"nb": [1.0, None]}})


def test_history_keeps_the_newest():
    history: dict[str, list[float]] = {}
    for i in range(HISTORY_LIMIT + 3):
        add_history(history, "nb", i)
    assert len(history["nb"]) == HISTORY_LIMIT
    assert history["nb"][-1] == HISTORY_LIMIT + 2 and history["nb"][0] == 3


def place(key, *, team, tier, at):
    return Place(key, key[3:], "", tier, team, (team,), at, 99.0)


def test_between_teams_running_as_many_the_narrower_tier_goes_first():
    """A freed slice that both could use serves the pool-only tier's place first, though the
    open tier's place (another team) asked earlier; within a team, first come first."""
    wide = place("ns/a", team="vision", tier="notebook", at=1.0)
    narrow_ = place("ns/b", team="nlp", tier="training", at=2.0)
    mate = place("ns/c", team="nlp", tier="notebook", at=0.5)  # nlp's first come
    line = Line([wide, narrow_])
    assert [p.key for p in line.order()] == ["ns/a", "ns/b"]  # no narrowness known: FIFO
    line.set_narrowness({"notebook": 13, "training": 2})
    assert [p.key for p in line.order()] == ["ns/b", "ns/a"]
    line.add(mate)  # nlp's head is now its earlier notebook place: FIFO within nlp holds
    assert [p.key for p in line.order()] == ["ns/c", "ns/b", "ns/a"]
    line.set_running({"nlp": 1})  # fewer running first, before any narrowness
    assert [p.key for p in line.order()] == ["ns/a", "ns/c", "ns/b"]
