"""The real Prometheus scraping the dcgm-exporter stand-in, for the idle-server tests.

* ``dcgm_exporter`` (function): a :class:`mig_spawner.demo.dcgm.DcgmExporter` on a free port.
* ``prometheus`` (function): the Prometheus ``make k8s`` builds (pinned in
  tests/controlplane/prometheus/go.mod, next to the control plane in
  :func:`~mig_spawner.demo.controlplane.launcher.cache_dir`), scraping that exporter every
  second with a config and a storage directory of its own, on a port from
  :func:`~mig_spawner.demo.ports.free_port`; stopped after the test. Two jobs scrape the
  exporter: ``dcgm`` keeps its labels (``honor_labels: true``), ``dcgm-relabeled`` does not
  and puts the exporter pod's own ``namespace``/``pod`` on the target, so the scraped ones
  become ``exported_namespace``/``exported_pod``, as under a ServiceMonitor without
  ``honorLabels``.

A missing binary FAILS the test, naming ``make k8s``: never a skip (CI builds it).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from built import die_with_parent, require_built

from mig_spawner.core.idle import vector
from mig_spawner.demo.controlplane.launcher import prometheus_binary
from mig_spawner.demo.dcgm import DcgmExporter
from mig_spawner.demo.ports import free_port

#: the target labels of the relabeled job: where the exporter itself runs
EXPORTER_NAMESPACE = "gpu-operator"
EXPORTER_POD = "nvidia-dcgm-exporter-7xk2p"

CONFIG = """\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: dcgm
    honor_labels: true
    static_configs:
      - targets: [{targets}]
  - job_name: dcgm-relabeled
    honor_labels: false
    static_configs:
      - targets: [{targets}]
        labels: {{namespace: {namespace}, pod: {pod}}}
"""


def require_prometheus() -> Path:
    return require_built("Prometheus", prometheus_binary())


class Prometheus:
    """One Prometheus process on loopback; ``start()`` returns once it is ready."""

    def __init__(self, binary: Path, workdir: Path, targets: list[str], interval: str = "1s"):
        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        quoted = ", ".join(json.dumps(t) for t in targets)
        self.config.write_text(
            CONFIG.format(
                interval=interval, targets=quoted, namespace=EXPORTER_NAMESPACE, pod=EXPORTER_POD
            )
        )

    def start(self, timeout: float = 60.0) -> Prometheus:
        argv = [
            str(self.binary),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
            # targets are applied on this tick, 5 s by default: the first scrape came 5 s late
            "--scrape.discovery-reload-interval=200ms",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"Prometheus did not get ready:\n{self.log_tail()}", pytrace=False)
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query's vector (raises for anything else)."""
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            return vector(json.loads(r.read()), source=url)


@pytest.fixture
def dcgm_exporter():
    with DcgmExporter() as exporter:
        yield exporter


@pytest.fixture
def prometheus(dcgm_exporter, tmp_path):
    """The real Prometheus scraping ``dcgm_exporter`` every second."""
    prom = Prometheus(
        require_prometheus(), tmp_path / "prometheus", [f"127.0.0.1:{dcgm_exporter.port}"]
    ).start()
    yield prom
    prom.stop()
