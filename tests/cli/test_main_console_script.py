"""The installed `mig-spawner` console script, run as users run it, and `catalog`."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import types

from cli_helpers import EXE, SNAPSHOTS, TEAMS_CONFIG, assert_one_error_line, run_exe, snapshot


def test_console_script_is_installed_next_to_the_interpreter():
    assert EXE.is_file(), f"{EXE} missing: pip install -e . declares mig_spawner.cli.main:main"
    r = run_exe("--help")
    assert r.code == 0
    assert "catalog" in r.out and "explain" in r.out
    assert r.out.startswith("usage: mig-spawner ")


def test_catalog_json_via_the_console_script():
    r = run_exe("catalog", "--json")
    assert r.code == 0 and r.err == ""
    models = json.loads(r.out)
    by_key = {m["key"]: m for m in models}
    h100 = by_key["h100-80gb"]
    assert "NVIDIA-H100-80GB-HBM3" in h100["products"]
    profiles = {p["name"]: p for p in h100["profiles"]}
    assert profiles["1g.10gb"]["resource"] == "nvidia.com/mig-1g.10gb"
    assert profiles["1g.10gb"]["compute_slices"] == 1
    assert profiles["1g.10gb+me"]["resource"] == "nvidia.com/mig-1g.10gb.me"
    assert profiles["7g.80gb"]["max_instances"] == 1


def test_catalog_json_is_exactly_the_catalogs_to_json(cli):
    from mig_spawner.core.catalog import default_catalog

    r = cli("catalog", "--json")
    assert r.code == 0
    assert r.out == json.dumps(default_catalog().to_json(), indent=2) + "\n"


def test_catalog_table_lists_models_products_and_profiles(cli):
    from mig_spawner.core.catalog import default_catalog

    r = cli("catalog")
    assert r.code == 0 and r.err == ""
    lines = r.out.splitlines()
    for model in default_catalog():
        assert any(line.startswith(f"{model.display_name} [{model.key}]:") for line in lines)
    start = lines.index(next(line for line in lines if line.startswith("H100 80GB [h100-80gb]")))
    assert lines[start].endswith("7 compute / 8 memory slices, 81559 MiB")
    assert lines[start + 1] == "  products: NVIDIA-H100-80GB-HBM3, NVIDIA-H100-PCIe"
    assert lines[start + 2].split() == ["profile", "g", "memory", "SMs", "max", "resource"]
    row = lines[start + 3].split()
    assert row == ["1g.10gb", "1", "10", "GB", "(9984", "MiB)", "16", "7", "nvidia.com/mig-1g.10gb"]
    # unknown figures print as '?', not 'None'
    assert "None" not in r.out and " ? " in r.out


def test_explain_json_via_the_console_script():
    r = run_exe(
        "explain",
        "--cluster",
        SNAPSHOTS / "mixed-h100.json",
        "--config",
        TEAMS_CONFIG,
        "--user",
        "dave",
        "--tier",
        "notebook",
        "--json",
    )
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["requested_profile"] == "1g.10gb" and out["granted_profile"] == "2g.20gb"
    assert out["fallback"] is True and out["warnings"] == []


def test_explain_reads_the_snapshot_from_stdin():
    r = run_exe(
        "explain",
        "--cluster",
        "-",
        "--config",
        TEAMS_CONFIG,
        "--user",
        "alice",
        "--tier",
        "training",
        "--json",
        input=json.dumps(snapshot("single-h100")).encode(),
    )
    assert r.code == 0, r.err
    assert json.loads(r.out)["granted_profile"] == "3g.40gb"


def test_bad_input_via_the_console_script_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "snapshot.json"
    bad.write_text("<html>not json</html>")
    r = run_exe("explain", "--cluster", bad, "--config", TEAMS_CONFIG, "--user", "a", "--tier", "x")
    assert_one_error_line(r, f"{bad}:1:1: not valid JSON")
    cfg = tmp_path / "hub.py"
    cfg.write_text("c = get_config()\nc.MIGSpawner.tiers = {'a': {'fallback': 'yes'}}\n")
    r = run_exe(
        "explain",
        "--cluster",
        SNAPSHOTS / "mixed-h100.json",
        "--config",
        cfg,
        "--user",
        "a",
        "--tier",
        "a",
    )
    assert_one_error_line(r, "MIGSpawner.tiers['a'].fallback must be true or false, not 'yes'")


def test_internal_errors_are_one_line_too(cli, monkeypatch):
    import mig_spawner.cli.explain

    def boom(**kwargs):
        raise RuntimeError("unexpected\nstate")

    monkeypatch.setattr(mig_spawner.cli.explain, "explain", boom)
    r = cli("explain", "--cluster", "x", "--config", "y", "--user", "u", "--tier", "t")
    assert r.code == 1 and r.out == ""
    assert r.err_lines == [
        "mig-spawner: error: internal error: RuntimeError: unexpected state"
        " (set MIG_SPAWNER_DEBUG=1 for details)"
    ]


def test_demo_subcommand_is_registered_when_the_demo_module_exists(cli, monkeypatch):
    calls = []
    fake = types.ModuleType("mig_spawner.demo.command")
    fake.__spec__ = importlib.machinery.ModuleSpec("mig_spawner.demo.command", loader=None)
    fake.main = lambda args: calls.append((args.port, args.cluster)) or 0
    monkeypatch.setitem(sys.modules, "mig_spawner.demo.command", fake)
    assert importlib.util.find_spec("mig_spawner.demo.command") is fake.__spec__
    assert cli("demo", "--port", "9001", "--cluster", "lab.yaml").code == 0
    assert cli("demo").code == 0
    assert calls == [(9001, "lab.yaml"), (8000, None)]
    assert "demo" in cli("--help").out


def test_without_the_demo_module_the_cli_still_works(cli, monkeypatch):
    import mig_spawner.cli.demo

    monkeypatch.setattr(mig_spawner.cli.demo, "demo_available", lambda: False)
    help_text = cli("--help").out
    assert "catalog" in help_text and "demo" not in help_text
    r = cli("demo")
    assert r.code == 2 and "invalid choice: 'demo'" in r.err
    assert cli("catalog", "--json").code == 0
