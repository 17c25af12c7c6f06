"""mig-spawner demo tells the truth before it starts anything: a busy port, the banner."""

from __future__ import annotations

import errno
import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import psutil

from mig_spawner.demo.command import ADMIN, PASSWORD, banner, port_in_use


def _time_wait_port() -> int:
    """A port whose only socket left is in TIME-WAIT, as a hub stopped by Ctrl-C leaves its
    port: the server side of an accepted connection closes first, then the listener goes.
    The listener reuses addresses as the proxy's (node's) and the hub's (tornado's) do."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the active close: this end, on `port`, goes to TIME-WAIT
        assert client.recv(1) == b""
        client.close()
    return port


def test_a_port_held_only_by_time_wait_sockets_is_free_for_a_restart():
    port = _time_wait_port()
    # The condition is real: a bind without SO_REUSEADDR (the old probe) is refused ...
    with socket.socket() as plain:
        try:
            plain.bind(("127.0.0.1", port))
        except OSError as e:
            assert e.errno == errno.EADDRINUSE
        else:
            raise AssertionError(f"port {port} has no TIME-WAIT socket; the test proves nothing")
    # ... but the hub's proxy binds with SO_REUSEADDR, and so does the probe.
    assert not port_in_use(port)
    with socket.socket() as hub:
        hub.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hub.bind(("127.0.0.1", port))
        hub.listen()
        assert port_in_use(port)  # a live listener is still refused


def test_a_port_with_a_listener_is_in_use_even_if_it_reuses_addresses():
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert port_in_use(busy.getsockname()[1])


def test_a_port_in_use_is_one_line_naming_it_and_port_exit_2_nothing_left():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        script = Path(sys.executable).with_name("mig-spawner")
        # its processes carry a mark (the environment they inherit): other pytest workers
        # start hubs of their own meanwhile
        mark = {"MIG_SPAWNER_TEST_MARK": uuid.uuid4().hex}
        r = subprocess.run(
            [str(script), "demo", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **mark},
        )
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"port {port} is in use" in lines[0] and "--port" in lines[0]
    assert "is running" not in r.stderr
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if _marked(p, mark)]
    assert not left


def _marked(process: psutil.Process, mark: dict[str, str]) -> bool:
    try:
        return mark.items() <= process.environ().items()
    except (psutil.Error, OSError):  # gone, or not ours to read
        return False


def test_banner_names_the_admin_user():
    text = banner("http://127.0.0.1:8000/hub/login", Path("demo.yaml"), Path("/tmp/pods"))
    assert f"admin:     {ADMIN}  (admin page: http://127.0.0.1:8000/hub/admin)" in text


def _start_demo(
    port: int, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, list[str]]:
    """``mig-spawner demo`` up to its banner: the process and every line before the banner."""
    script = Path(sys.executable).with_name("mig-spawner")
    proc = subprocess.Popen(
        [str(script), "demo", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    before: list[str] = []
    for line in proc.stdout:
        if "mig-spawner demo is running" in line:
            return proc, before
        before.append(line)
    raise AssertionError("the demo exited before its banner:\n" + "".join(before))


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _rest_of_output(proc)
    return proc.returncode


def _rest_of_output(proc: subprocess.Popen, timeout: float = 60) -> str:
    """The demo's output up to its end, which comes once every process that inherited it
    has exited; bounded, so that a process left behind fails the test instead of hanging
    the suite (a run once hung there on a proxy the hub had left)."""
    return proc.communicate(timeout=timeout)[0]


def _log_in(port: int, user: str, password: str) -> int:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    url = f"http://127.0.0.1:{port}/hub/login"
    page = opener.open(url, timeout=30).read().decode()
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": user, "password": password, "_xsrf": xsrf})
    try:
        return opener.open(url, form.encode(), timeout=30).status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_demo_starts_without_our_warnings_and_restarts_at_once_after_ctrl_c():
    """Issue 19: JupyterHub warned about our own config (DummyAuthenticator.password,
    extra_handlers) before the banner, and a restart right after Ctrl-C was refused while
    the proxy's TIME-WAIT sockets remained."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc, before = _start_demo(port)
    try:
        warnings = [line for line in before if line.startswith("[W ")]
        (service_url,) = {
            line.split("Server(url=", 1)[1].split(",", 1)[0]
            for line in warnings
            if "Server(url=" in line
        }
        # JupyterHub's own lines are all that is left, neither avoidable: its note on
        # running without SSL (a local demo has no certificate, and no setting says so),
        # and, on a fresh proxy, the route it adds for mig-spawner's service (it logs
        # every route a fresh proxy lacks as "missing"; a service with a URL needs one).
        assert sorted(w.split("] ", 1)[1].strip() for w in warnings) == sorted(
            [
                "Running JupyterHub without SSL.  I hope there is SSL termination happening "
                "somewhere else...",
                f"Adding missing route for mig (Server(url={service_url}, bind_url={service_url}))",
            ]
        ), before
        assert not [line for line in before if "deprecated" in line.lower()]
        # the demo's one password: right for a listed user, wrong otherwise
        assert _log_in(port, "erin", "not-the-password") == 403
        assert _log_in(port, "mallory", PASSWORD) == 403
        assert _log_in(port, "erin", PASSWORD) == 200  # served connections: TIME-WAIT after
    finally:
        assert _stop(proc) == 0
    proc, _ = _start_demo(port)  # at once, on the same port
    assert _stop(proc) == 0


def test_a_hub_that_dies_before_its_cleanup_leaves_no_proxy_behind():
    """JupyterHub stops its proxy (started in a session of its own) in its cleanup. A hub
    killed, or stopped before it has installed its signal handlers (a Ctrl-C right after
    the banner), never gets there: the demo then stops the proxy itself."""
    mark = {"MIG_SPAWNER_TEST_MARK": uuid.uuid4().hex}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc, _ = _start_demo(port, env=mark)
    try:
        marked = [p for p in psutil.process_iter(["cmdline"]) if _marked(p, mark)]
        (hub,) = [p for p in marked if "jupyterhub" in " ".join(p.info["cmdline"] or [])]
        (proxy,) = [p for p in marked if "configurable-http-proxy" in str(p.info["cmdline"])]
        hub.kill()  # no cleanup: the proxy is left running
        output = _rest_of_output(proc)
        assert f"stopped the hub's leftover proxy (pid {proxy.pid})" in output
        assert "mig-spawner demo stopped." in output
        assert not proxy.is_running()
        left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if _marked(p, mark)]
        assert not left
        assert not port_in_use(port)
    finally:
        for p in psutil.process_iter():
            if _marked(p, mark):
                p.kill()
        if proc.poll() is None:
            proc.kill()


def test_a_garbled_cluster_file_is_bad_input_located_not_an_internal_error(tmp_path):
    """Issue 19: `demo --cluster` with bad YAML, an unknown GPU or an unknown profile printed
    "internal error: ClusterSpecError: ..." with exit 1."""
    from cli_helpers import Result, assert_one_error_line

    node = "nodes:\n  - name: a\n"
    cases = {
        "yaml": (node + "    gpu: h100-80gb\n     mig: all-balanced\n", "4:9", "not valid YAML"),
        "gpu": (node + "    gpu: H999\n", "3:10", "unknown GPU 'H999'; use a GFD product label"),
        "profile": (node + "    gpu: h100-80gb\n    mig: [[9g.99gb]]\n", "4:12", "unknown MIG"),
    }
    script = Path(sys.executable).with_name("mig-spawner")
    for name, (text, where, what) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        r = subprocess.run(
            [str(script), "demo", "--port", "1", "--cluster", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        line = assert_one_error_line(Result(r.returncode, r.stdout, r.stderr), what)
        assert line.startswith(f"mig-spawner: error: {path}:{where}: "), line
        assert "internal error" not in r.stderr
