"""core/linedoc.py: the persisted line document checked, kept after a restart, summed up."""

from __future__ import annotations

import copy
import json

import pytest

from mig_spawner.core import linedoc
from mig_spawner.core.errors import InputError, format_path

NOW = 1_765_000_000.0


def place(key="jhub/jupyter-bob", *, tier="notebook", position=1, requested_at=NOW - 120, **kw):
    out = {
        "key": key,
        "user": key.rsplit("-", 1)[-1],
        "server_name": "",
        "tier": tier,
        "team": "vision",
        "groups": ["vision"],
        "requested_at": requested_at,
        "deadline": NOW + 1800,
        "position": position,
        "eta_seconds": 360.0,
    }
    out.update(kw)
    return out


def document(*places, hub="jupyterhub", history=None):
    return {
        "version": 1,
        "hub": hub,
        "saved_at": NOW - 5,
        "places": list(places),
        "history": history if history is not None else {"notebook": [3600.0, 1800.5]},
    }


def configmap(data, name="mig-spawner-line-jupyterhub", namespace="jhub"):
    return {"metadata": {"name": name, "namespace": namespace}, "data": data}


# --------------------------------------------------------------------------- parsing


def test_the_contract_example_parses():
    raw = document(place(), place("jhub/jupyter-amy", position=2, eta_seconds=None))
    doc = linedoc.parse_document(json.dumps(raw), hub="jupyterhub")
    assert doc.hub == "jupyterhub" and doc.saved_at == NOW - 5
    assert [p.key for p in doc.places] == ["jhub/jupyter-bob", "jhub/jupyter-amy"]
    assert doc.places[0].groups == ("vision",)
    assert doc.places[1].eta_seconds is None
    assert doc.history == {"notebook": (3600.0, 1800.5)}


def test_history_keeps_the_newest_500():
    doc = linedoc.parse_document(document(history={"t": [float(i) for i in range(700)]}))
    assert doc.history["t"] == tuple(float(i) for i in range(200, 700))


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda d: d.update(version=2), ("version",), "version is 2"),
        (lambda d: d.pop("version"), ("version",), "version is null"),
        (lambda d: d.update(hub="other"), ("hub",), "another hub's line"),
        (lambda d: d.update(saved_at="soon"), ("saved_at",), "not a number"),
        (lambda d: d.update(saved_at=10**400), ("saved_at",), "not a number"),  # no float
        (lambda d: d.update(places={}), ("places",), "not a list"),
        (lambda d: d["places"][1].update(requested_at=None), ("places", 1, "requested_at"), ""),
        (lambda d: d["places"][0].update(position=0), ("places", 0, "position"), ""),
        (lambda d: d["places"][0].update(position=True), ("places", 0, "position"), ""),
        (lambda d: d["places"][0].pop("deadline"), ("places", 0), "has no deadline"),
        (lambda d: d["places"][0].update(groups=["a", 3]), ("places", 0, "groups", 1), ""),
        (lambda d: d["places"][1].update(key="jhub/jupyter-bob"), ("places",), "twice"),
        (
            lambda d: d["places"][0].update(eta_seconds=float("nan")),
            ("places", 0, "eta_seconds"),
            "",
        ),
        (lambda d: d["history"].update(notebook=[1, -2]), ("history", "notebook"), "negative"),
        (lambda d: d["history"].update(notebook="x"), ("history", "notebook"), "not a list"),
    ],
)
def test_a_bad_document_names_the_key(change, path, words):
    raw = document(place(), place("jhub/jupyter-amy", position=2))
    change(raw)
    with pytest.raises(InputError) as e:
        linedoc.parse_document(raw, hub="jupyterhub")
    assert e.value.path == path
    assert words in e.value.message
    assert format_path(path) in str(e.value) or not path


def test_garbled_json_points_at_the_line_and_column():
    text = '{"version": 1,\n "hub": "jupyterhub", "places": [}\n'
    with pytest.raises(InputError) as e:
        linedoc.parse_configmap(configmap({"line.json": text}), "jupyterhub")
    err = e.value
    assert err.source == "ConfigMap jhub/mig-spawner-line-jupyterhub key line.json"
    assert err.path == ("data", "line.json")
    assert "line 2, column" in err.message
    assert '"places": [}' in err.detail and "^" in err.detail
    assert str(err).startswith("ConfigMap jhub/mig-spawner-line-jupyterhub key line.json: not JSON")


def test_a_foreign_configmap_is_refused_and_its_data_kept():
    foreign = configmap({"settings.yaml": "a: 1"})
    with pytest.raises(InputError, match=r"has no key line.json \(its keys: settings.yaml\)") as e:
        linedoc.parse_configmap(foreign, "jupyterhub")
    assert e.value.source == "ConfigMap jhub/mig-spawner-line-jupyterhub"
    assert linedoc.rejected_data(foreign) == {"settings.yaml": "a: 1"}
    garbled = configmap({"line.json": "{oops", "note": "x"})
    kept = linedoc.rejected_data(garbled)
    assert kept == {linedoc.REJECTED_KEY: "{oops", "note": "x"}
    body = linedoc.configmap_body(document(), hub="jupyterhub", namespace="jhub", keep=kept)
    assert body["data"][linedoc.REJECTED_KEY] == "{oops" and body["data"]["note"] == "x"
    assert json.loads(body["data"]["line.json"]) == document()
    assert linedoc.parse_configmap(body, "jupyterhub").hub == "jupyterhub"


def test_configmap_name_follows_hub_id():
    assert linedoc.configmap_name("jupyterhub") == "mig-spawner-line-jupyterhub"
    with pytest.raises(InputError) as e:
        linedoc.configmap_name("My Hub")
    assert e.value.path == ("MIGSpawner", "hub_id")


def test_written_body_reads_back_equal():
    raw = document(place(), place("jhub/jupyter-amy", position=2, eta_seconds=None))
    body = linedoc.configmap_body(raw, hub="jupyterhub", namespace="jhub")
    assert body["metadata"]["name"] == "mig-spawner-line-jupyterhub"
    assert body["metadata"]["namespace"] == "jhub"
    again = linedoc.parse_configmap(body, "jupyterhub")
    assert again == linedoc.parse_document(copy.deepcopy(raw))


# --------------------------------------------------------------------------- restart


def test_kept_places_last_the_grace_and_skip_expired_waits():
    raw = document(
        place(position=2, requested_at=NOW - 300),
        place("jhub/jupyter-cat", position=1, deadline=NOW - 1),  # max_wait ran out
        place("jhub/jupyter-dan", tier="training", position=1),
    )
    doc = linedoc.parse_document(raw)
    kept = linedoc.kept_places(doc, NOW, 600)
    assert set(kept) == {"jhub/jupyter-bob", "jhub/jupyter-dan"}
    assert kept["jhub/jupyter-bob"] == linedoc.KeptPlace(NOW - 300, 2, NOW + 600, "notebook")
    assert kept["jhub/jupyter-dan"].tier == "training"
    assert linedoc.kept_places(doc, NOW, 0) == {}


def test_restart_message():
    kept = linedoc.KeptPlace(NOW - 300, 2, NOW + 600, "notebook")
    assert (
        linedoc.restart_message(kept, NOW)
        == "the hub restarted: your place (#2) is kept for 10 min - press Start"
    )
    assert "kept for 4 min" in linedoc.restart_message(kept, NOW + 361)
    assert "kept for 1 min" in linedoc.restart_message(kept, NOW + 599)


# --------------------------------------------------------------------------- summary


def test_summary_orders_tiers_by_policy_and_places_by_position():
    raw = document(
        place("jhub/jupyter-amy", position=2, eta_seconds=None),
        place("jhub/jupyter-bob", position=1, eta_seconds=90.0),
        place("jhub/jupyter-dan", tier="training", position=1),
        place("jhub/jupyter-eve", tier="gone", position=1),
    )
    doc = linedoc.parse_document(raw)
    rows = linedoc.summary(doc, ["training", "notebook", "full"])
    assert [(r.tier, r.waiting) for r in rows] == [("training", 1), ("notebook", 2), ("gone", 1)]
    assert [p.user for p in rows[1].places] == ["bob", "amy"]
    assert rows[1].head_eta == 90.0
    assert linedoc.waiting_counts(doc, ["full", "notebook"]) == {
        "full": 0,
        "notebook": 2,
        "training": 1,
        "gone": 1,
    }
    out = linedoc.summary_dict(doc, NOW, ["notebook"])
    assert out["tiers"][0]["tier"] == "notebook"
    assert out["tiers"][0]["places"][0] == {
        "position": 1,
        "user": "bob",
        "server": "",
        "team": "vision",
        "waited_seconds": 120.0,
        "eta_seconds": 90.0,
    }
    assert json.loads(json.dumps(out)) == out


def test_eta_text():
    assert linedoc.eta_text(None) == "time unknown"
    assert linedoc.eta_text(360) == "about 6 min"
    assert linedoc.eta_text(10) == "about 1 min"


def test_restart_notice_only_for_the_servers_own_unexpired_place():
    kept = {"jhub/jupyter-bob": linedoc.KeptPlace(NOW - 300, 2, NOW + 600, "notebook")}
    assert linedoc.restart_notice(kept, "jhub/jupyter-bob", NOW).endswith("10 min - press Start")
    assert linedoc.restart_notice(kept, "jhub/jupyter-amy", NOW) == ""
    assert linedoc.restart_notice(kept, "jhub/jupyter-bob", NOW + 600) == ""


def test_fit_drops_the_oldest_history_first_and_never_a_place():
    raw = document(
        place(), place("jhub/jupyter-amy", position=2), history={"a": [1.0] * 400 + [2.0] * 100}
    )
    whole = linedoc.fit(raw, 10**6)
    assert whole[0] is raw and json.loads(whole[1]) == raw
    size = len(linedoc.encoded(raw))
    trimmed, text = linedoc.fit(raw, size - 500)
    assert len(text) <= size - 500 and json.loads(text) == trimmed
    assert trimmed["places"] == raw["places"]
    assert trimmed["history"]["a"][-100:] == [2.0] * 100  # the newest kept
    assert 0 < len(trimmed["history"]["a"]) < 500
    places_only = len(linedoc.encoded({**raw, "history": {"a": []}}))
    assert linedoc.fit(raw, places_only - 1) is None
