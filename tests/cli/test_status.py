"""``mig-spawner status`` from snapshot files: tables, --map, --json, bad input."""

from __future__ import annotations

from cli_helpers import SNAPSHOTS, TEAMS_CONFIG

from mig_spawner.cli.explain import build_state, load_snapshot
from mig_spawner.core import slicemap


def test_status_tables_from_a_snapshot(cli):
    r = cli("status", "--cluster", SNAPSHOTS / "multi-model.json", "--config", TEAMS_CONFIG)
    assert r.code == 0, r.err
    out = r.out
    assert "Slices by GPU model and profile" in out and "Teams against their quotas" in out
    # Each figure is the state's own: compare with core.slicemap on the same snapshot.
    state, _ = build_state(load_snapshot(str(SNAPSHOTS / "multi-model.json")))
    for t in slicemap.by_type(slicemap.capacity(state)):
        row = f"│ {t.gpu} │ {t.profile:<7} │"
        assert row in out, row
    assert "│ vision │ compute slices │ 2 of 8 " in out
    assert "h100-pool-1" in out and "a100-pool-2" in out


def test_status_map_draws_every_gpu_with_its_holders(cli):
    r = cli("status", "--cluster", SNAPSHOTS / "multi-model.json", "--map", "--nodes", "h100-*")
    assert r.code == 0, r.err
    assert "a100-pool" not in r.out
    assert "alice [vision·notebook]" in r.out
    assert "██████··  3g.40gb" not in r.out  # 3g.40gb sits at 0-3 or 4-7, never 0-5
    assert "████····  3g.40gb   free" in r.out and "····████  3g.40gb   free" in r.out
    assert "Teams: pass --config" in r.out


def test_status_json_has_every_cell(cli):
    r = cli(
        "status", "--cluster", SNAPSHOTS / "multi-model.json", "--config", TEAMS_CONFIG, "--json"
    )
    assert r.code == 0, r.err
    data = r.json
    nodes = {n["name"]: n for n in data["nodes"]}
    cells = [c for g in nodes["h100-pool-1"]["gpus"] for c in g["cells"]]
    assert len(cells) == 7 and all(c["state"] in ("used", "other") for c in cells)
    alice = next(c for c in cells if c["holder"] and c["holder"]["user"] == "alice")
    assert alice["holder"]["team"] == "vision" and alice["holder"]["fallback"] is False
    teams = {t["team"]: t for t in data["teams"]}
    assert teams["vision"]["limits"]["compute_slices"] == {"used": 2, "limit": 8}
    assert sum(t["free"] for t in data["types"]) == 6


def test_status_bad_input_is_one_line(cli, write_json):
    r = cli("status", "--cluster", write_json("{not json"))
    assert r.code == 2 and len(r.err_lines) == 1 and "not valid JSON" in r.err
    r = cli("status")
    assert r.code == 2 and "one of the arguments --cluster --kubeconfig --in-cluster" in r.err
    r = cli("status", "--cluster", SNAPSHOTS / "multi-model.json", "--context", "prod")
    assert r.code == 2 and "--context needs --kubeconfig" in r.err
    r = cli("status", "--kubeconfig", "/nonexistent/kubeconfig")
    assert r.code == 2 and r.err_lines == [
        "mig-spawner: error: cannot read kubeconfig /nonexistent/kubeconfig: no such file"
    ]
