"""``mig-spawner demand`` and ``advise``: exit codes, the JSON shape, valid layouts, bad input."""

from __future__ import annotations

import json
import random

from cli_helpers import SNAPSHOTS

from mig_spawner.core.catalog import default_catalog
from mig_spawner.core.layouts import Layout, is_valid

MULTI = SNAPSHOTS / "multi-model.json"
H100 = "NVIDIA-H100-80GB-HBM3"


def demand_lines(n=120, seed=5, profiles=("3g.40gb", "3g.20gb", "1g.10gb"), horizon=3600.0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        profile = rng.choice(profiles)
        out.append(
            json.dumps(
                {
                    "t": 1_700_000_000 + rng.uniform(0, horizon),
                    "profile": profile,
                    "duration_s": rng.expovariate(1 / 600),
                    "team": "vision" if i % 2 else "nlp",
                }
            )
        )
    return out


def hub_log(tmp_path, lines, name="hub.log"):
    path = tmp_path / name
    text = [
        f"[I 2026-12-06 10:00:{i % 60:02d}.000 JupyterHub spawner:1] demand {line}"
        for i, line in enumerate(lines)
    ]
    text.insert(3, "[I 2026-12-06 10:00:00.000 JupyterHub app:1] Hub is ready")
    text.insert(5, "[I 2026-12-06 10:00:00.000 JupyterHub spawner:1] demand {garbled")
    path.write_text("\n".join(text) + "\n")
    return path


def test_demand_extracts_records_as_json_lines_and_counts_garbled_ones(cli, tmp_path):
    log = hub_log(tmp_path, demand_lines(10))
    r = cli("demand", log)
    assert r.code == 0, r.err
    records = [json.loads(line) for line in r.out.splitlines()]
    assert len(records) == 10 and all(rec["outcome"] == "served" for rec in records)
    assert "skipped 1 garbled demand line(s)" in r.err and f"{log}:6: not JSON" in r.err
    empty = tmp_path / "empty.log"
    empty.write_text("[I ...] nothing here\n")
    r = cli("demand", empty)
    assert r.code == 2 and f"no demand records in {empty}" in r.err


def test_advise_json_shape_valid_layouts_and_busy_nodes_kept(cli, tmp_path):
    log = hub_log(tmp_path, demand_lines())
    plot = tmp_path / "replay.svg"
    r = cli("advise", "--cluster", MULTI, "--demand", log, "--json", "--plot", plot)
    assert r.code == 0, r.err
    out = r.json
    assert set(out["nodes"]) == {"a100-pool-1", "a100-pool-2", "h100-pool-1", "h100-pool-2"}
    for name in ("a100-pool-2", "h100-pool-1"):  # GPU pods run there
        node = out["nodes"][name]
        assert node["kept"] == "running GPU pods" and not node["changed"]
        assert node["layout"] == node["current"]
    catalog = default_catalog()
    for name, node in out["nodes"].items():
        model = catalog.model("h100-80gb" if name.startswith("h100") else "a100-40gb")
        assert isinstance(node["layout"], list) and len(node["layout"]) == 1  # one GPU each
        for gpu in node["layout"]:
            counts = {p: gpu.count(p) for p in gpu}
            assert is_valid(Layout.of(model, counts)), (name, gpu)
        assert isinstance(node["mig_config"], str) and node["mig_config"]
    for which in ("current", "advised"):
        figures = out["replay"][which]
        assert {"served", "refused", "mean_wait_s", "p90_wait_s"} <= set(figures)
        assert figures["served"] + figures["refused"] == 120
    assert out["replay"]["advised"]["served"] >= out["replay"]["current"]["served"]
    assert out["demand"]["skipped"] == 1
    changed = [n for n, v in out["nodes"].items() if v["changed"]]
    assert out["commands"] == [
        f"kubectl label node {n} nvidia.com/mig.config={out['nodes'][n]['mig_config']} --overwrite"
        for n in changed
    ]
    cm = out["configmap"]
    assert cm["kind"] == "ConfigMap" and cm["data"]["config.yaml"].startswith("version: v1")
    for n in changed:
        assert out["nodes"][n]["mig_config"] in cm["data"]["config.yaml"]
    assert plot.read_text().startswith("<svg") and "advised" in plot.read_text()
    assert out["solver"]["runs"][0]["gap"] <= 1e-3


def test_advise_text_names_the_figures_and_the_commands(cli, tmp_path):
    log = hub_log(tmp_path, demand_lines())
    r = cli("advise", "--cluster", MULTI, "--demand", log, "--max-nodes-changed", "1")
    assert r.code == 0, r.err
    assert "current -> advised" in r.out and "served" in r.out and "p90 wait" in r.out
    assert "Skipped 1 garbled demand line(s)" in r.out
    assert r.out.count("kubectl label node") <= 1


def test_max_nodes_changed_zero_changes_nothing(cli, tmp_path):
    log = hub_log(tmp_path, demand_lines())
    r = cli("advise", "--cluster", MULTI, "--demand", log, "--json", "--max-nodes-changed", "0")
    assert r.code == 0, r.err
    assert r.json["commands"] == [] and not any(n["changed"] for n in r.json["nodes"].values())


def test_bad_input_exits_2_with_a_located_message(cli, tmp_path):
    empty = tmp_path / "none.log"
    empty.write_text("nothing\n{broken\n")
    r = cli("advise", "--cluster", MULTI, "--demand", empty)
    assert r.code == 2 and "no demand records" in r.err and "1 garbled" in r.err
    wrong = tmp_path / "wrong.jsonl"
    line = {"t": 1, "profile": "1g.5gb", "duration_s": 60, "gpu": H100}
    wrong.write_text(json.dumps({**line, "profile": "1g.10gb"}) + "\n" + json.dumps(line) + "\n")
    r = cli("advise", "--cluster", MULTI, "--demand", wrong)
    assert r.code == 2
    assert f"{wrong}:2: 1g.5gb is not a MIG profile of H100 80GB ({H100})" in r.err
    r = cli("advise", "--cluster", MULTI, "--demand", tmp_path / "missing.log")
    assert r.code == 2 and "cannot read demand file" in r.err
    log = hub_log(tmp_path, demand_lines(5))
    r = cli("advise", "--cluster", MULTI, "--demand", log, "--apply")
    assert r.code == 2 and "--apply needs the live cluster" in r.err
    r = cli("advise", "--cluster", MULTI, "--demand", log, "--max-nodes-changed", "-1")
    assert r.code == 2


def test_a_profile_no_model_in_the_cluster_has_is_named(cli, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"t": 1, "profile": "1g.18gb", "duration_s": 60}) + "\n")
    r = cli("advise", "--cluster", MULTI, "--demand", path, "--json")
    assert r.code == 0, r.err
    assert "profile 1g.18gb is not a profile of any GPU model in the cluster" in r.err
