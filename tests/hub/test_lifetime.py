"""mig-spawner's hub-managed service lives as long as the hub that started it (hub/lifetime.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest
import requests

from mig_spawner.demo.ports import free_port
from mig_spawner.hub.lifetime import HUB_PID_ENV
from mig_spawner.hub.service import SETTINGS_ENV

# A stand-in for the hub: it starts the service, as JupyterHub does, says its pid, and waits.
# It passes its pid as service() does. "early": it exits before the service has started.
HUB = textwrap.dedent(
    """
    import os, subprocess, sys
    os.environ[HUB_PID_ENV] = str(os.getpid())
    service = subprocess.Popen([sys.executable, "-m", "mig_spawner.hub.service"])
    print(service.pid, flush=True)
    if sys.argv[1] != "early":
        sys.stdin.readline()
    """
)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2, allow_redirects=False).status_code < 500
    except requests.RequestException:
        return False


@pytest.mark.parametrize("how", ["killed", "exited", "early"])
def test_the_service_stops_once_the_hub_that_started_it_is_gone(how):
    """A hub killed (SIGKILL, the OOM killer) never stops its services: the service sees
    that the hub is gone and stops within seconds, giving its port back. "early": the hub
    died while the service was still starting (what a demo test met: a Ctrl-C right after
    the banner), so the service never saw its parent change."""
    port = free_port()
    settings = {"KubeSpawner": {"k8s_api_host": f"http://127.0.0.1:{free_port()}"}}
    env = {
        **os.environ,
        SETTINGS_ENV: json.dumps(settings),
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/mig/",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{free_port()}/hub/api",
        "JUPYTERHUB_API_TOKEN": "not-checked-here",
        "JUPYTERHUB_CLIENT_ID": "service-mig",
    }
    hub = subprocess.Popen(
        [sys.executable, "-c", f"HUB_PID_ENV = {HUB_PID_ENV!r}\n" + HUB, how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,  # the service's log too: it inherits it
        env=env,
        text=True,
    )
    service = None
    try:
        service = psutil.Process(int(hub.stdout.readline()))
        log = []
        if how == "early":
            hub.wait(timeout=10)  # gone (and reaped) before the service is up
        for line in hub.stderr:  # up to the service's "listening"
            log.append(line)
            if "mig-spawner service listening" in line:
                break
        if how == "killed":
            assert _answers(f"http://127.0.0.1:{port}/services/mig/"), log
            hub.send_signal(signal.SIGKILL)
        elif how == "exited":
            assert _answers(f"http://127.0.0.1:{port}/services/mig/"), log
            hub.stdin.close()  # the stand-in exits on its own, leaving the service
        hub.wait(timeout=10)
        service.wait(timeout=15)  # raises if it outlives the hub
        log.append(hub.stderr.read())  # its end: every process holding it has exited
        assert f"the hub (pid {hub.pid}) is gone; stopping" in "".join(log)
        assert "Traceback" not in "".join(log)
        assert not _answers(f"http://127.0.0.1:{port}/services/mig/")
    finally:
        if service is not None and service.is_running():
            service.kill()
        if hub.poll() is None:
            hub.kill()
        hub.wait(timeout=10)
        for pipe in (hub.stdin, hub.stdout, hub.stderr):
            pipe.close()
