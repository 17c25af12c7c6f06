"""A hub configured with MIGSpawner and a malformed policy refuses to start.

Real ``jupyterhub`` processes (the installed console script), each in its own directory
with its own database and proxy: the check must run while the hub starts, before any
user meets the error, and say in one line which setting is wrong.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.hub

JUPYTERHUB = Path(sys.executable).with_name("jupyterhub")
GOOD_TIERS = {"notebook": {"display_name": "1g notebook", "compute_slices": 1}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_hub(tmp_path: Path, settings: str, *, wait_for: str, timeout: float = 60):
    """Start a hub with ``settings`` appended to its config; return (exit code, log)."""
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(
        textwrap.dedent(
            f"""
            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {_free_port()}
            c.JupyterHub.hub_port = {_free_port()}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{_free_port()}"
            c.ConfigurableHTTPProxy.pid_file = {str(tmp_path / "proxy.pid")!r}
            c.JupyterHub.db_url = "sqlite:///{tmp_path / "hub.sqlite"}"
            c.JupyterHub.cookie_secret_file = {str(tmp_path / "cookie_secret")!r}
            c.JupyterHub.authenticator_class = "dummy"
            """
        )
        + textwrap.dedent(settings)
    )
    log = tmp_path / "hub.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(JUPYTERHUB), "-f", str(config)],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if wait_for in log.read_text(errors="replace"):
                    break
                time.sleep(0.2)
            code = proc.poll()
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return code, log.read_text(errors="replace")


def test_a_malformed_tier_stops_the_hub_with_one_line_naming_it(tmp_path):
    code, log = _run_hub(
        tmp_path,
        """
        c.JupyterHub.spawner_class = "mig"
        c.MIGSpawner.tiers = {"notebook": {"display_name": "1g", "compute_slices": 9}}
        """,
        wait_for="JupyterHub is now running",
    )
    assert code == 1, log
    lines = [line for line in log.splitlines() if "invalid configuration" in line]
    assert len(lines) == 1, log
    assert "MIGSpawner.tiers['notebook']" in lines[0] and "compute_slices" in lines[0]
    assert "Traceback" not in log
    assert "JupyterHub is now running" not in log


def test_a_team_quota_naming_an_unknown_limit_stops_the_hub(tmp_path):
    code, log = _run_hub(
        tmp_path,
        f"""
        c.JupyterHub.spawner_class = "mig_spawner.MIGSpawner"
        c.MIGSpawner.tiers = {GOOD_TIERS!r}
        c.MIGSpawner.team_quotas = {{"vision": {{"gpus": 4}}}}
        """,
        wait_for="JupyterHub is now running",
    )
    assert code == 1, log
    (line,) = [line for line in log.splitlines() if "invalid configuration" in line]
    assert "MIGSpawner.team_quotas['vision']" in line and "gpus" in line


def test_a_valid_policy_starts_the_hub(tmp_path):
    code, log = _run_hub(
        tmp_path,
        f"""
        c.JupyterHub.spawner_class = "mig"
        c.MIGSpawner.tiers = {GOOD_TIERS!r}
        c.MIGSpawner.team_quotas = {{"vision": {{"compute_slices": 4}}}}
        """,
        wait_for="JupyterHub is now running",
    )
    assert code is None, log  # still running when the hub said it was up
    assert "JupyterHub is now running" in log
    assert "invalid configuration" not in log
