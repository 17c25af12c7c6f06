"""mig-spawner demo tells the truth before it starts anything: a busy port, the banner."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psutil

from mig_spawner.demo.command import ADMIN, banner


def test_a_port_in_use_is_one_line_naming_it_and_port_exit_2_nothing_left():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        script = Path(sys.executable).with_name("mig-spawner")
        before = {p.pid for p in psutil.process_iter()}
        r = subprocess.run(
            [str(script), "demo", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"port {port} is in use" in lines[0] and "--port" in lines[0]
    assert "is running" not in r.stderr
    left = [
        p.info["cmdline"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if p.info["pid"] not in before and "jupyterhub" in " ".join(p.info["cmdline"] or [])
    ]
    assert not left


def test_banner_names_the_admin_user():
    text = banner("http://127.0.0.1:8000/hub/login", Path("demo.yaml"), Path("/tmp/pods"))
    assert f"admin:     {ADMIN}  (admin page: http://127.0.0.1:8000/hub/admin)" in text
