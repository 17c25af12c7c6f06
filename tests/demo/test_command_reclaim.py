"""Issue 23's "done when" on the demo: an idle server is reclaimed only for a waiting
user, and only after its warning.

``mig-spawner demo --reclaim 6,5`` as a user runs it, on a one-GPU cluster whose two
1g.10gb are the only slices the 1g notebook may use. bob and carol take them; bob stays
active (his activity reaches the hub through its REST API, as his single-user server's
reports do), carol does not. Nobody waits: carol is left alone, however idle. dave asks:
he waits in line, carol is warned, and once the grace has run out she is stopped, dave
starts, and carol's home page says why.
"""

from __future__ import annotations

import datetime
import re
import signal
import threading
import time
from pathlib import Path

import requests
from test_command import _start_demo

from mig_spawner.demo.command import PASSWORD
from mig_spawner.demo.ports import free_port

IDLE, GRACE = 6, 5
CLUSTER = """\
nodes:
  - name: gpu-h100-a
    gpu: NVIDIA-H100-80GB-HBM3
    strategy: mixed
    mig: [[1g.10gb, 1g.10gb, 4g.40gb]]
"""


class Demo:
    def __init__(self, port: int, proc, lines: list[str]):
        self.base = f"http://127.0.0.1:{port}"
        self.proc, self.lines = proc, lines
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.admin = self.session("alice")  # the demo's admin
        r = self.admin.post(
            f"{self.base}/hub/api/users/alice/tokens",
            json={"note": "test"},
            headers={"X-XSRFToken": self.admin.cookies.get("_xsrf", path="/hub/")},
        )
        assert r.status_code == 201, r.text
        self.token = {"Authorization": f"token {r.json()['token']}"}

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def session(self, user: str) -> requests.Session:
        s = requests.Session()
        page = s.get(f"{self.base}/hub/login", timeout=30).text
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)
        r = s.post(
            f"{self.base}/hub/login",
            data={"username": user, "password": PASSWORD, "_xsrf": xsrf},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return s

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(
            method, f"{self.base}/hub/api/{path}", headers=self.token, timeout=60, **kw
        )

    def server(self, user: str) -> dict:
        return self.api("get", f"users/{user}").json()["servers"].get("", {})

    def log(self, word: str) -> list[str]:
        return [line for line in list(self.lines) if word in line]


def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not {what} after {timeout} s"
        time.sleep(0.25)


def test_an_idle_server_is_reclaimed_only_for_a_waiting_user_and_after_its_warning(tmp_path):
    cluster = Path(tmp_path / "one-gpu.yaml")
    cluster.write_text(CLUSTER)
    port = free_port()
    proc, lines = _start_demo(port, "--cluster", str(cluster), "--reclaim", f"{IDLE},{GRACE}")
    demo = Demo(port, proc, lines)
    active = threading.Event()
    try:
        for user in ("bob", "carol"):
            r = demo.api("post", f"users/{user}/server", json={"profile": "notebook"})
            assert r.status_code in (201, 202), r.text
        until(lambda: all(demo.server(u).get("ready") for u in ("bob", "carol")), 120, "ready")

        def keep_bob_active():
            while not active.is_set():
                now = datetime.datetime.now(datetime.timezone.utc).isoformat()
                body = {"last_activity": now, "servers": {"": {"last_activity": now}}}
                demo.api("post", "users/bob/activity", json=body)
                time.sleep(0.5)

        threading.Thread(target=keep_bob_active, daemon=True).start()
        time.sleep(IDLE + 3)  # carol is idle now, and nobody waits
        assert demo.log("reclaim warn") == [] and demo.log("reclaim stop") == []

        r = demo.api("post", "users/dave/server", json={"profile": "notebook"})
        assert r.status_code == 202, r.text  # dave waits in line
        until(lambda: demo.log("reclaim warn"), 30, "a warning")
        (warned,) = demo.log("reclaim warn")
        assert "user=carol" in warned and "reason=idle" in warned
        warned_at = time.monotonic()
        carol = demo.session("carol")
        home = carol.get(f"{demo.base}/hub/home", timeout=30).text
        assert "mig-reclaim-warning" in home and "unless you use it" in home
        until(lambda: demo.server("dave").get("ready"), 120, "dave started")
        (stopped,) = demo.log("reclaim stop")
        assert time.monotonic() - warned_at >= GRACE - 1.5  # not before the grace
        assert "user=carol" in stopped and "for dave's 1g notebook waiting in line" in stopped
        assert not demo.server("carol") and demo.server("bob").get("ready")
        home = carol.get(f"{demo.base}/hub/home", timeout=30).text
        assert "mig-reclaim-notice" in home and "was stopped at" in home
    finally:
        active.set()
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=60) == 0
