"""``explain --config values.yaml [--config values-<variant>.yaml]``: the hub's view of Helm values.

The hub of a Zero to JupyterHub release reads its values back from the chart's Secret, where
``toYaml`` has sorted every map by key (tests/z2jh renders the real chart and checks the
running hub). ``explain`` on the same files must see what that hub sees: the same tiers in
the same order, the same team for a member of two teams, the overlays merged as ``helm -f``.
"""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import assert_one_error_line

from mig_spawner.cli.hubconfig import load_helm_values, policy_from_config

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "helm-values" / "values.yaml"
SINGLE = ROOT / "helm-values" / "values-single-strategy.yaml"
UMBRELLA = ROOT / "helm-values" / "umbrella" / "values.yaml"

UNORDERED = """\
hub:
  config:
    MIGSpawner:
      tiers:
        notebook: {display_name: 1g}
        training: {display_name: 3g, compute_slices: 3}
        full: {display_name: 7g, compute_slices: 7}
      team_quotas:
        vision: {compute_slices: 8}
        nlp: {compute_slices: 14}
"""


def test_values_file_tiers_keep_the_order_key_not_the_file_order():
    policy = policy_from_config(load_helm_values([str(VALUES)]))
    assert list(policy.tiers) == ["notebook", "training", "full"]
    assert policy.teams_for({"nlp", "vision"}) == ["vision", "nlp"]


def test_without_order_explain_sees_what_the_hub_sees_sorted_keys(tmp_path):
    """No ``order``: the hub gets the keys sorted, and so does explain (never the file order)."""
    path = tmp_path / "values.yaml"
    path.write_text(UNORDERED)
    policy = policy_from_config(load_helm_values([str(path)]))
    assert list(policy.tiers) == ["full", "notebook", "training"]
    assert policy.teams_for({"vision", "nlp"}) == ["nlp", "vision"]


def test_umbrella_values_are_read_under_the_subchart_key():
    a = policy_from_config(load_helm_values([str(UMBRELLA)]))
    b = policy_from_config(load_helm_values([str(VALUES)]))
    assert a == b


def test_layered_values_merge_like_helm_and_null_removes_a_team(cli, tmp_path):
    overlay = tmp_path / "values-no-vision.yaml"
    overlay.write_text("hub: {config: {MIGSpawner: {team_quotas: {vision: null}}}}\n")
    args = ["explain", "--cluster", ROOT / "tests/cli/snapshots/mixed-h100.json"]
    who = ["--user", "alice", "--groups", "nlp,vision", "--tier", "notebook", "--json"]
    base = cli(*args, "--config", VALUES, *who)
    assert base.code == 0, base.err
    assert json.loads(base.out)["team"] == "vision"  # order 1, although nlp sorts first
    layered = cli(*args, "--config", VALUES, "--config", overlay, *who)
    assert layered.code == 0, layered.err
    assert json.loads(layered.out)["team"] == "nlp"
    # the single-strategy overlay changes one key of a tier and keeps the rest
    single = policy_from_config(load_helm_values([str(VALUES), str(SINGLE)]))
    notebook = single.tier("notebook")
    assert notebook.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"}
    assert notebook.display_name == "1g notebook" and notebook.min_memory_gb == 10


def test_bad_values_files_get_one_line(cli, tmp_path):
    cluster = ROOT / "tests/cli/snapshots/mixed-h100.json"
    cases = {
        "broken.yaml": ("hub: [\n", "broken.yaml:2:1: not valid YAML"),
        "list.yaml": ("- a\n- b\n", "must be a mapping at the top level"),
        "section.yaml": ("hub: {config: {migSpawner: {}}}\n", "hub.config.migSpawner is not a"),
        "partial.yaml": (
            "hub: {config: {MIGSpawner: {tiers: {a: {order: 1}, b: {}}}}}\n",
            "partial.yaml:1:36: MIGSpawner.tiers",  # where the tiers are, then what is wrong
        ),
    }
    for name, (text, fragment) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        r = cli("explain", "--cluster", cluster, "--config", path, "--user", "u", "--tier", "a")
        assert_one_error_line(r, fragment)
    missing = ["--config", tmp_path / "missing.yaml", "--user", "u", "--tier", "notebook"]
    r = cli("explain", "--cluster", cluster, *missing)
    assert r.code == 2 and "cannot read values" in r.err
    mixed = ["--config", VALUES, "--config", ROOT / "jupyterhub_config.py"]
    r = cli("explain", "--cluster", cluster, *mixed, "--user", "u", "--tier", "notebook")
    assert r.code == 2 and "not both" in r.err
