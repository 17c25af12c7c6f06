"""A hub configured with MIGSpawner, its service and a malformed policy refuses to start.

Real ``jupyterhub`` processes (the installed console script), each in its own directory
with its own database and proxy: the check must run while the hub starts, before any
user meets the error, and say in one line which setting is wrong. It is mig-spawner's
hub-managed service that checks (JupyterHub exits when a managed service exits before it
answers); a hub that starts says nothing deprecated and serves mig_spawner_* metrics.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from mig_spawner.demo.ports import free_port

pytestmark = pytest.mark.hub

JUPYTERHUB = Path(sys.executable).with_name("jupyterhub")
GOOD_TIERS = {"notebook": {"display_name": "1g notebook", "compute_slices": 1}}


def _run_hub(tmp_path: Path, settings: str, *, wait_for: str, timeout: float = 60, then=None):
    """Start a hub with ``settings`` appended to its config (and mig-spawner's service);
    ``then(url)`` once ``wait_for`` is logged; return (exit code, log)."""
    config = tmp_path / "jupyterhub_config.py"
    port = free_port()
    config.write_text(
        textwrap.dedent(
            f"""
            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {port}
            c.JupyterHub.hub_port = {free_port()}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
            c.ConfigurableHTTPProxy.pid_file = {str(tmp_path / "proxy.pid")!r}
            c.JupyterHub.db_url = "sqlite:///{tmp_path / "hub.sqlite"}"
            c.JupyterHub.cookie_secret_file = {str(tmp_path / "cookie_secret")!r}
            c.JupyterHub.authenticator_class = "dummy"
            c.Authenticator.allow_all = True
            c.JupyterHub.authenticate_prometheus = False
            c.KubeSpawner.k8s_api_host = "http://127.0.0.1:{free_port()}"  # no cluster
            c.MIGSpawner.cluster_sync_timeout = 0.5
            """
        )
        + textwrap.dedent(settings)
        + textwrap.dedent(
            f"""
            from mig_spawner.hub.service import roles, service
            c.JupyterHub.services = [service(c, url="http://127.0.0.1:{free_port()}")]
            c.JupyterHub.load_roles = roles()
            """
        )
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
                    if then is not None:
                        then(f"http://127.0.0.1:{port}")
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
            _stop_left_proxy(tmp_path / "proxy.pid")
    return code, log.read_text(errors="replace")


def _stop_left_proxy(pid_file: Path) -> None:
    """A hub that exits at start (its service refused the config) leaves its proxy running
    (JupyterHub kills it from the pid file when it next starts): not one per test run."""
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        proxy = psutil.Process(int(pid_file.read_text()))
        if "configurable-http-proxy" in " ".join(proxy.cmdline()):
            proxy.kill()


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


def test_a_valid_policy_starts_the_hub_warns_of_nothing_and_serves_metrics(tmp_path):
    seen = {}

    def visit(url):
        with requests.Session() as browser:
            browser.get(f"{url}/hub/login")  # its _xsrf cookie
            login = {"username": "alice", "password": "x", "_xsrf": browser.cookies["_xsrf"]}
            r = browser.post(f"{url}/hub/login", data=login)
            assert r.status_code == 200, r.text[:300]
            # the spawn page: JupyterHub builds alice's MIGSpawner, the first registers
            seen["spawn"] = browser.get(f"{url}/hub/spawn").text
            seen["metrics"] = requests.get(f"{url}/hub/metrics").text
            seen["page"] = browser.get(f"{url}/services/mig/")

    code, log = _run_hub(
        tmp_path,
        f"""
        c.JupyterHub.spawner_class = "mig"
        c.MIGSpawner.tiers = {GOOD_TIERS!r}
        c.MIGSpawner.team_quotas = {{"vision": {{"compute_slices": 4}}}}
        """,
        wait_for="JupyterHub is now running",
        then=visit,
    )
    assert code is None, log  # still running when the hub said it was up
    assert "JupyterHub is now running" in log
    assert "invalid configuration" not in log
    # nothing deprecated: no extra_handlers, no other warning naming mig-spawner's setup
    assert "deprecated" not in log.lower(), log
    assert "Traceback" not in log, log
    assert "Starting managed service mig" in log
    # the page's service is up and proxied (alice is no admin: 403, after the OAuth)
    assert seen["page"].status_code == 403, seen["page"].text[:300]
    assert "services/mig/api/figures" in seen["spawn"]
    families = {f.name for f in text_string_to_metric_families(seen["metrics"])}
    assert {"mig_spawner_decisions", "mig_spawner_cluster_view_healthy"} <= families, families


def test_the_lines_namespace_is_the_hubs_also_with_a_namespace_per_user(monkeypatch):
    """The service reads the waiting line where the hub saves it (hub/linestore.py's
    ``hub_namespace``): the configured namespace, or, with a namespace per user, the one
    the hub runs in."""
    from traitlets.config import Config

    from mig_spawner.hub import service

    monkeypatch.setattr(service, "_namespace_default", lambda: "hub-ns")
    config = Config()
    config.KubeSpawner.namespace = "jhub"
    assert service.Settings.from_config(config).namespace == "jhub"
    config.KubeSpawner.enable_user_namespaces = True
    settings = service.Settings.from_config(config)
    assert settings.namespace == "hub-ns" and settings.trust.namespaces is None
