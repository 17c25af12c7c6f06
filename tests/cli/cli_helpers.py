"""Helpers for the CLI tests: the snapshot fixtures, the test config, and two ways to run.

``conftest.py``'s ``cli`` fixture calls :func:`mig_spawner.cli.main.main` in-process (fast,
most tests); :func:`run_exe` runs the installed ``mig-spawner`` console script in a
subprocess, the way users do.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SNAPSHOTS = HERE / "snapshots"
CONFIGS = HERE / "configs"
TEAMS_CONFIG = CONFIGS / "teams_config.py"
ROOT_CONFIG = REPO / "jupyterhub_config.py"
EXE = Path(sys.executable).parent / "mig-spawner"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def snapshot(name: str) -> dict:
    """A fresh copy of a committed snapshot (``mixed-h100``, ``single-h100``, ``multi-model``)."""
    return copy.deepcopy(_cached(name))


_CACHE: dict[str, dict] = {}


def _cached(name: str) -> dict:
    if name not in _CACHE:
        _CACHE[name] = json.loads((SNAPSHOTS / f"{name}.json").read_text())
    return _CACHE[name]


def items_of(data: dict, kind: str) -> list[dict]:
    return [i for i in data["items"] if i["kind"] == kind]


def find(data: dict, kind: str, name_prefix: str) -> dict:
    (hit,) = [i for i in items_of(data, kind) if i["metadata"]["name"].startswith(name_prefix)]
    return hit


def drop(data: dict, predicate) -> dict:
    data["items"] = [i for i in data["items"] if not predicate(i)]
    return data


def cordon(node: dict) -> dict:
    """What `kubectl cordon` and the node lifecycle controller leave on a Node."""
    node["spec"]["unschedulable"] = True
    node["spec"].setdefault("taints", []).append(
        {
            "effect": "NoSchedule",
            "key": "node.kubernetes.io/unschedulable",
            "timeAdded": "2026-11-20T10:00:00Z",
        }
    )
    return node


def set_not_ready(node: dict) -> dict:
    """What the node lifecycle controller leaves on a Node whose kubelet stopped posting."""
    for cond in node["status"]["conditions"]:
        if cond["type"] == "Ready":
            cond.update(status="Unknown", reason="NodeStatusUnknown")
    node["spec"].setdefault("taints", []).extend(
        [
            {"effect": "NoSchedule", "key": "node.kubernetes.io/unreachable"},
            {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable"},
        ]
    )
    return node


def run_exe(*argv: str, input: bytes | None = None) -> Result:
    proc = subprocess.run(
        [str(EXE), *map(str, argv)], input=input, capture_output=True, timeout=60, check=False
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def assert_one_error_line(result: Result, *fragments: str) -> str:
    """Exit 2, nothing on stdout, exactly one ``mig-spawner: error:`` line, no traceback;
    after it at most the file's line with a caret under the fault (``  N | text``)."""
    assert result.code == 2, (result.code, result.err)
    assert result.out == ""
    assert "Traceback" not in result.err
    lines = result.err_lines
    assert len(lines) in (1, 3), lines
    if len(lines) == 3:
        assert re.fullmatch(r" +\d+ \| .*", lines[1]), lines
        assert re.fullmatch(r" + \| +\^", lines[2]), lines
    assert lines[0].startswith("mig-spawner: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
