"""`mig-spawner explain` on bad input: exit 2, one `mig-spawner: error:` line, no traceback.

Garbled objects inside an otherwise good snapshot are warnings, not errors: the decision
is still made (exit 0) from what parses.
"""

from __future__ import annotations

import json
import re

import pytest
from cli_helpers import TEAMS_CONFIG, assert_one_error_line, find, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from k8s_factories import node as factory_node


def explain_args(cluster, config=TEAMS_CONFIG, tier="notebook", user="dave"):
    return ["explain", "--cluster", cluster, "--config", config, "--user", user, "--tier", tier]


# ----------------------------------------------------------------------- snapshots


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("this is not json", [":1:1: not valid JSON (Expecting value)", "kubectl get nodes"]),
        ('{"kind": "List", "items": [', [":1:28: not valid JSON"]),
        ("", ["is empty"]),
        ("  \n", ["is empty"]),
        ('{"apiVersion": "v1", "kind": "List"}', ["a List object without 'items'"]),
        ('{"nodes": []}', ["a JSON object without 'items'"]),
        ('{"kind": "List", "items": {"a": 1}}', ["'items' is an object, not a list"]),
        ("42", ["holds a number"]),
        ('"nodes"', ["holds a string"]),
        ('{"kind": "List", "items": []}', ["holds no Node objects (0 item(s))"]),
        ('{"kind": "List", "items": [1, 2]}', ["items[0] is a number, not a Kubernetes object"]),
        ('[{"kind": "Node", "metadata": {"name": "n"}}, "x"]', ["items[1] is a string"]),
        ("[null]", ["items[0] is null"]),
        (
            '{"kind": "PodList", "items": [{"metadata": {"name": "p"}, "spec": {}}]}',
            ["holds no Node objects (1 item(s))"],
        ),
    ],
    ids=[
        "not-json",
        "truncated",
        "empty",
        "blank",
        "list-without-items",
        "object-without-items",
        "items-not-a-list",
        "number",
        "string",
        "no-items",
        "items-not-objects",
        "one-item-not-an-object",
        "null-item",
        "pods-only",
    ],
)
def test_unusable_snapshots_exit_2_with_one_line(cli, write_json, content, fragments):
    path = write_json(content, "snap.json")
    line = assert_one_error_line(cli(*explain_args(path)), *fragments)
    assert "snap.json" in line


def test_non_utf8_and_missing_and_directory_snapshots(cli, write_json, tmp_path):
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"kind": "List", "items": ["caf\xe9"]}')
    assert_one_error_line(cli(*explain_args(str(latin1))), "is not UTF-8 text")
    assert_one_error_line(
        cli(*explain_args(str(tmp_path / "nope.json"))), "cannot read", "No such file"
    )
    assert_one_error_line(cli(*explain_args(str(tmp_path))), "cannot read", "directory")


def test_garbled_objects_are_warnings_and_the_decision_is_still_made(cli, write_json):
    data = snapshot("mixed-h100")
    # a node whose device plugin reports nonsense, one with no name, a pod with no name,
    # an item of another kind and an item of no recognisable kind
    garbled = factory_node("gpu-garbled", mig=["1g.10gb"])
    garbled["status"]["allocatable"]["nvidia.com/mig-1g.10gb"] = "lots"
    garbled["status"]["allocatable"]["nvidia.com/mig-9g.1gb"] = "1"
    data["items"] += [
        garbled,
        {"kind": "Node", "metadata": {}, "status": {"allocatable": {"nvidia.com/gpu": "1"}}},
        {"kind": "Pod", "metadata": {"namespace": "x"}, "spec": {"containers": []}},
        {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "hub"}},
        {"metadata": {"name": "mystery"}},
    ]
    r = cli(*explain_args(write_json(data)), "--json")
    assert r.code == 0, r.err
    out = r.json
    assert out["admitted"] is True and out["granted_profile"] == "2g.20gb"
    warnings = out["warnings"]
    assert len(warnings) == 6, warnings
    assert any("node gpu-garbled: allocatable nvidia.com/mig-1g.10gb='lots'" in w for w in warnings)
    assert any("node gpu-garbled: ignored nvidia.com/mig-9g.1gb" in w for w in warnings)
    n = len(data["items"])
    assert any(
        f"items[{n - 4}] skipped: not a Node: metadata.name is missing" in w for w in warnings
    )
    assert any(
        f"items[{n - 3}] skipped: not a Pod: metadata.name is missing" in w for w in warnings
    )
    assert any("neither Node nor Pod (1 Service)" in w for w in warnings)
    assert any(f"items[{n - 1}] (mystery) has no kind" in w for w in warnings)
    # the same warnings, one line each, on stderr
    assert r.err_lines == [f"mig-spawner: warning: {w}" for w in warnings]
    assert "Traceback" not in r.err


def test_snapshot_from_stdin(cli, monkeypatch):
    import io
    import sys

    raw = json.dumps(snapshot("single-h100")).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    r = cli(*explain_args("-"), "--json")
    assert r.code == 0, r.err
    assert r.json["granted_resource"] == "nvidia.com/gpu"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"[]")))
    assert_one_error_line(cli(*explain_args("-")), "<stdin> holds no Node objects")


# ----------------------------------------------------------------------- configs

MIXED = "tests/cli/snapshots/mixed-h100.json"


def test_config_syntax_error_names_file_and_line(cli, write_config):
    path = write_config(
        "c = get_config()\nc.MIGSpawner.tiers = {\n    'nb': {'compute_slices': 1\n"
    )
    line = assert_one_error_line(cli(*explain_args(MIXED, path)), "SyntaxError")
    assert line.startswith(f"mig-spawner: error: {path}:2: ") or line.startswith(
        f"mig-spawner: error: {path}:3: "
    )


def test_config_runtime_error_names_file_and_line(cli, write_config):
    path = write_config("c = get_config()\n\nc.MIGSpawner.tiers = TIERS\n")
    assert_one_error_line(
        cli(*explain_args(MIXED, path)), f"{path}:3: NameError: name 'TIERS' is not defined"
    )
    path = write_config("c = get_config()\nimport oauthenticator_that_is_not_installed\n")
    assert_one_error_line(cli(*explain_args(MIXED, path)), f"{path}:2: ModuleNotFoundError")
    # an error raised in a function the config calls still points at the config's line
    path = write_config("def tiers():\n    return 1 / 0\n\nc.MIGSpawner.tiers = tiers()\n")
    assert_one_error_line(cli(*explain_args(MIXED, path)), f"{path}:2: ZeroDivisionError")


def test_config_that_exits_or_prints(cli, write_config):
    path = write_config("import sys\nsys.exit('bye')\n")
    assert_one_error_line(cli(*explain_args(MIXED, path)), f"{path}:2: the config called exit")
    # what a config prints goes to stderr, so --json output stays one JSON object
    path = write_config(
        f"print('loading config')\nload_subconfig({str(TEAMS_CONFIG)!r})\nprint('done')\n"
    )
    r = cli(*explain_args(MIXED, path), "--json")
    assert r.code == 0 and r.json["admitted"] is True
    assert r.err_lines == ["loading config", "done"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "c.MIGSpawner.tiers = {'nb': {'compute_slice': 1}}",
            "MIGSpawner.tiers['nb']: unknown key 'compute_slice' (did you mean 'compute_slices'?)",
        ),
        ("c.JupyterHub.log_level = 'DEBUG'", "MIGSpawner.tiers must be a non-empty mapping"),
        (
            "c.MIGSpawner.tiers = {'nb': {}}\nc.MIGSpawner.charge = 'free'",
            "MIGSpawner.charge must be 'granted' or 'requested', not 'free'",
        ),
        (
            "c.MIGSpawner.tiers = {'nb': {}}\n"
            "c.MIGSpawner.fallback_chains = {'nb': ['1c.2g.20gb']}",
            "MIGSpawner.fallback_chains['nb']: not a MIG profile name",
        ),
        (
            "c.MIGSpawner.tiers = {'nb': {}}\nc.MIGSpawner.team_quotas = {'v': {'slices': 1}}",
            "MIGSpawner.team_quotas['v']: unknown key 'slices'",
        ),
        (
            "c.MIGSpawner.tiers = {'nb': {}}\nc.JupyterHub.load_groups = ['vision']",
            "JupyterHub.load_groups must map group names to members",
        ),
        (
            "c.MIGSpawner.tiers = {'nb': {}}\nc.JupyterHub.load_groups = {'v': 'dave'}",
            "JupyterHub.load_groups['v'] must be a list of user names",
        ),
    ],
    ids=[
        "unknown-key",
        "no-tiers",
        "bad-charge",
        "bad-chain",
        "bad-quota",
        "load-groups-not-a-dict",
        "load-groups-string",
    ],
)
def test_invalid_settings_exit_2_with_the_config_error(cli, write_config, text, fragment):
    path = write_config(f"c = get_config()\n{text}\n")
    line = assert_one_error_line(cli(*explain_args(MIXED, path)), fragment)
    setting = fragment.split(" ")[0].split("[")[0].removesuffix(":")
    if f"c.{setting} = " in text:  # the file sets it: the error points at its line and column
        assignment = next(n for n, t in enumerate(text.splitlines(), 2) if f"c.{setting} = " in t)
        assert re.match(rf"mig-spawner: error: {re.escape(str(path))}:{assignment}:\d+: ", line)
    else:
        assert line.startswith(f"mig-spawner: error: {path}: ")


def test_missing_config_file(cli, tmp_path):
    missing = tmp_path / "jupyterhub_config.py"
    assert_one_error_line(
        cli(*explain_args(MIXED, str(missing))), f"cannot read config {missing}", "No such file"
    )


def test_usage_errors_exit_2(cli):
    r = cli("explain", "--cluster", MIXED, "--user", "dave", "--tier", "notebook")
    assert r.code == 2 and "the following arguments are required: --config" in r.err
    assert "Traceback" not in r.err
    r = cli("frobnicate")
    assert r.code == 2 and "invalid choice: 'frobnicate'" in r.err
    r = cli()
    assert r.code == 2 and "required: COMMAND" in r.err
    assert cli("--help").code == 0


# ----------------------------------------------------------------------- fuzz

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10),
    st.sampled_from(["", "1", "7", "-1", "²", "lots", "True", "Node", "Pod", "NoSchedule"]),
)
_json = st.recursive(
    _scalar,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "kind",
                    "metadata",
                    "name",
                    "namespace",
                    "labels",
                    "spec",
                    "status",
                    "allocatable",
                    "taints",
                    "conditions",
                    "containers",
                    "initContainers",
                    "resources",
                    "limits",
                    "requests",
                    "nodeName",
                    "phase",
                    "nvidia.com/gpu",
                    "nvidia.com/mig-1g.10gb",
                    "nvidia.com/gpu.product",
                    "mig-spawner/user",
                    "unschedulable",
                    "type",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def _mutate(obj, path, value):
    """Set obj[path...] = value, creating dicts on the way; returns obj."""
    cur = obj
    for key in path[:-1]:
        if not isinstance(cur.get(key), dict):
            cur[key] = {}
        cur = cur[key]
    cur[path[-1]] = value
    return obj


_NODE_PATHS = [
    ("metadata", "labels"),
    ("metadata", "labels", "nvidia.com/gpu.product"),
    ("spec",),
    ("spec", "taints"),
    ("spec", "unschedulable"),
    ("status",),
    ("status", "allocatable"),
    ("status", "allocatable", "nvidia.com/mig-1g.10gb"),
    ("status", "allocatable", "nvidia.com/gpu"),
    ("status", "conditions"),
]
_POD_PATHS = [
    ("metadata", "labels"),
    ("metadata", "labels", "mig-spawner/user"),
    ("metadata", "namespace"),
    ("metadata", "annotations"),
    ("spec",),
    ("spec", "containers"),
    ("spec", "initContainers"),
    ("spec", "nodeName"),
    ("status",),
    ("status", "phase"),
]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    node_edits=st.lists(st.tuples(st.sampled_from(_NODE_PATHS), _json), max_size=3),
    pod_edits=st.lists(st.tuples(st.sampled_from(_POD_PATHS), _json), max_size=3),
    extra=st.lists(_json, max_size=2),
)
def test_no_snapshot_ever_causes_a_traceback(cli, write_json, node_edits, pod_edits, extra):
    """Garbled fields in otherwise real objects: a decision (0) or one error line (2)."""
    data = snapshot("mixed-h100")
    node = find(data, "Node", "gke-lab-h100-b")
    pod = find(data, "Pod", "jupyter-bob")
    for path, value in node_edits:
        _mutate(node, path, value)
    for path, value in pod_edits:
        _mutate(pod, path, value)
    data["items"] += extra
    r = cli(*explain_args(write_json(data, "fuzz.json")), "--json")
    assert "Traceback" not in r.err
    assert "internal error" not in r.err, r.err
    if r.code == 0:
        out = r.json
        assert out["code"] in {"admitted", "capacity", "quota"}
        assert all(line.startswith("mig-spawner: warning: ") for line in r.err_lines)
    else:
        assert_one_error_line(r)


def test_one_error_type_for_hub_config_catalog_cluster_files_and_snapshots():
    """Issue 18/19: three helper sets had three error types; each now is an InputError."""
    from mig_spawner.cli.explain import InputError as CliInputError
    from mig_spawner.core.catalog import CatalogError
    from mig_spawner.core.errors import InputError
    from mig_spawner.core.policy import ConfigError
    from mig_spawner.demo.emulator.clusterfile import ClusterSpecError

    assert CliInputError is InputError
    for kind in (ConfigError, CatalogError, ClusterSpecError):
        assert issubclass(kind, InputError)
