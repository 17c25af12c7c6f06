"""Fixtures of the CLI tests; the helpers themselves live in ``cli_helpers.py``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# tests/core's factories build single Node/Pod objects for hand-made garbled cases.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

from cli_helpers import SNAPSHOTS, TEAMS_CONFIG, Result


@pytest.fixture
def write_json(tmp_path):
    counter = iter(range(10_000))

    def write(data, name: str | None = None) -> str:
        path = tmp_path / (name or f"snapshot-{next(counter)}.json")
        path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
        return str(path)

    return write


@pytest.fixture
def write_config(tmp_path):
    counter = iter(range(10_000))

    def write(text: str, name: str | None = None) -> str:
        path = tmp_path / (name or f"hub_config_{next(counter)}.py")
        path.write_text(text)
        return str(path)

    return write


@pytest.fixture
def cli(capsys):
    """Run ``mig-spawner ARGS`` in-process; returns a :class:`Result`."""
    from mig_spawner.cli.main import main

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def explain(cli):
    """``explain --json`` on a snapshot (a name or a path) with the teams config."""

    def run(cluster: str, *, user: str, tier: str, config=TEAMS_CONFIG, extra=()) -> Result:
        path = SNAPSHOTS / f"{cluster}.json" if "/" not in str(cluster) else cluster
        return cli(
            "explain",
            "--cluster",
            path,
            "--config",
            config,
            "--user",
            user,
            "--tier",
            tier,
            "--json",
            *extra,
        )

    return run
