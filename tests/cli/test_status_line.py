"""``mig-spawner status`` shows the hub's waiting line, read from its ConfigMap (a snapshot's
item or, live, one ``get``); a garbled one is bad input: exit 2 with its location."""

from __future__ import annotations

import json
import time

from cli_helpers import SNAPSHOTS, TEAMS_CONFIG
from test_live import SPEC, run

from mig_spawner.core import linedoc
from mig_spawner.demo.emulator import EmulatedCluster, load_cluster_spec


def place(user, position, tier="notebook", eta=None):
    now = time.time()  # each test's own: "waited" is read against the clock
    return {
        "key": f"jupyterhub/jupyter-{user}",
        "user": user,
        "server_name": "",
        "tier": tier,
        "team": "vision",
        "groups": ["vision"],
        "requested_at": now - 600 * position - 15,  # 10 min 15 s per position
        "deadline": now + 1800,
        "position": position,
        "eta_seconds": eta,
    }


def line_doc():
    return {
        "version": 1,
        "hub": "jupyterhub",
        "saved_at": time.time(),
        "places": [place("eve", 2), place("dan", 1, eta=360.0), place("fay", 1, tier="training")],
        "history": {},
    }


def snapshot_with(tmp_path, configmap):
    data = json.loads((SNAPSHOTS / "multi-model.json").read_text())
    data["items"].append({"kind": "ConfigMap", **configmap})
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(data))
    return path


def test_status_shows_the_line_per_tier_and_position(cli, tmp_path):
    cm = linedoc.configmap_body(line_doc(), hub="jupyterhub", namespace="jupyterhub")
    path = snapshot_with(tmp_path, cm)
    r = cli("status", "--cluster", path, "--config", TEAMS_CONFIG)
    assert r.code == 0, r.err
    assert "Waiting line" in r.out and "ConfigMap" not in r.err
    lines = [ln for ln in r.out.splitlines() if "dan" in ln or "eve" in ln or "fay" in ln]
    assert [next(u for u in ("dan", "eve", "fay") if u in ln) for ln in lines] == [
        "dan",
        "eve",
        "fay",
    ]
    assert "notebook (2 waiting)" in lines[0] and "about 6 min" in lines[0]
    assert "20 min" in lines[1] and "time unknown" in lines[1]
    assert "training (1 waiting)" in lines[2]
    data = cli("status", "--cluster", path, "--config", TEAMS_CONFIG, "--json").json
    tiers = {t["tier"]: t for t in data["line"]["tiers"]}
    assert tiers["notebook"]["waiting"] == 2 and tiers["notebook"]["head_eta_seconds"] == 360.0
    assert [p["user"] for p in tiers["notebook"]["places"]] == ["dan", "eve"]


def test_status_without_a_saved_line(cli, tmp_path):
    r = cli("status", "--cluster", SNAPSHOTS / "multi-model.json")
    assert r.code == 0 and "Waiting line: not read" in r.out
    assert r.code == 0
    r = cli("status", "--cluster", SNAPSHOTS / "multi-model.json", "--config", TEAMS_CONFIG)
    assert r.code == 0 and "Waiting line: nobody is waiting." in r.out
    data = cli("status", "--cluster", SNAPSHOTS / "multi-model.json", "--json").json
    assert data["line"] is None


def test_a_garbled_line_is_bad_input(cli, tmp_path):
    doc = line_doc()
    cm = linedoc.configmap_body(doc, hub="jupyterhub", namespace="jupyterhub")
    cm["data"]["line.json"] = json.dumps({**doc, "places": [{**place("dan", 1), "position": 0}]})
    r = cli("status", "--cluster", snapshot_with(tmp_path, cm), "--config", TEAMS_CONFIG)
    assert r.code == 2, (r.code, r.out, r.err)
    assert "ConfigMap jupyterhub/mig-spawner-line-jupyterhub key line.json" in r.err
    assert "places[0].position" in r.err and "Traceback" not in r.err
    cm["data"] = {"other": "x"}  # a foreign ConfigMap of that name
    r = cli("status", "--cluster", snapshot_with(tmp_path, cm), "--config", TEAMS_CONFIG)
    assert r.code == 2 and "has no key line.json" in r.err


async def test_live_status_gets_the_line_configmap(tmp_path):
    async with EmulatedCluster(load_cluster_spec(SPEC), kubelet="stub") as cluster:
        cluster.create_namespace("jupyterhub")
        cm = linedoc.configmap_body(line_doc(), hub="jupyterhub", namespace="jupyterhub")
        cluster.store.create("configmaps", "jupyterhub", cm)
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        cluster.clear_requests()
        code, out, err = await run(
            "status", "--kubeconfig", kubeconfig, "--config", TEAMS_CONFIG, "--json"
        )
        assert code == 0, err
        tiers = {t["tier"]: t["waiting"] for t in json.loads(out)["line"]["tiers"]}
        assert tiers == {"notebook": 2, "training": 1}
        gets = [p for m, p, _ in cluster.requests if "configmaps" in p]
        assert gets == ["/api/v1/namespaces/jupyterhub/configmaps/mig-spawner-line-jupyterhub"]
        assert all(m == "GET" for m, _, _ in cluster.requests)
