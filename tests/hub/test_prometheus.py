"""The hub's GPU readings from the real Prometheus (``make k8s`` builds it) scraping the
dcgm-exporter stand-in every second: peaks and sample counts as Prometheus computes them,
and "not known" (with the reason) whenever Prometheus does not answer clearly."""

from __future__ import annotations

import asyncio
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_harness import EXPORTER_NAMESPACE, EXPORTER_POD, require_prometheus
from tornado.httpclient import AsyncHTTPClient

from mig_spawner.core.idle import GpuReading
from mig_spawner.hub.prometheus import (
    NO_SERIES,
    duration,
    gpu_readings,
    min_samples,
    queries,
)

ENGINE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
UTIL = "DCGM_FI_DEV_GPU_UTIL"
NS = "jhub"
#: a window of a few scrapes (1 s apart), of which 3 are needed
FAST = {"window_s": 10, "scrape_interval_s": 1, "min_coverage": 0.3}
DEADLINE_S = 60  # for what Prometheus scrapes each second; far more than it takes


async def until(what: str, probe):
    """Poll the async ``probe`` until it returns a truthy value, which is returned."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while True:
        got = await probe()
        if got:
            return got
        assert loop.time() < deadline, f"{what}: still {got!r} after {DEADLINE_S} s"
        await asyncio.sleep(0.2)


async def known(url, pods, **kw):
    """The readings, once every pod's is known."""

    async def probe():
        got = await gpu_readings(url, NS, pods, **{**FAST, **kw})
        return got if all(r.known for r in got.values()) else None

    return await until(f"readings of {pods}", probe)


async def latest(prometheus, pod: str, value: float, metric: str = ENGINE):
    """Wait until Prometheus's latest sample of the pod's series is ``value``."""

    async def probe():
        got = prometheus.query(f'{metric}{{namespace="{NS}",pod="{pod}"}}')
        return [v for _, v in got] == [value]

    await until(f"{pod} at {value}", probe)


def test_a_prometheus_not_built_fails_the_test_naming_make_k8s(monkeypatch, tmp_path):
    monkeypatch.setenv("MIG_SPAWNER_K8S_CACHE", str(tmp_path))
    said = r"prometheus missing\): build it with `make k8s`"
    with pytest.raises(pytest.fail.Exception, match=said):
        require_prometheus()
    monkeypatch.undo()
    assert require_prometheus().name == "prometheus"  # built: the fixtures run it


def test_the_queries_and_the_sample_count_needed():
    peak, count = queries(
        ENGINE, 'a"b', 90, pod_label="exported_pod", namespace_label="exported_namespace"
    )
    selector = f'{ENGINE}{{exported_namespace="a\\"b"}}[90s]'
    assert peak == f"max by (exported_namespace, exported_pod) (max_over_time({selector}))"
    assert count == f"min by (exported_namespace, exported_pod) (count_over_time({selector}))"
    assert duration(1.5) == "1500ms" and duration(600) == "600s"
    assert min_samples(600, 15, 0.5) == 20 and min_samples(10, 1, 0.3) == 3
    assert min_samples(5, 30, 0.5) == 1


async def test_idle_busy_and_once_busy_pods_read_their_peaks(prometheus, dcgm_exporter):
    dcgm_exporter.set(NS, "jupyter-idle", engine_active=0.0)
    dcgm_exporter.set(NS, "jupyter-busy", engine_active=0.6, profile="2g.20gb")
    dcgm_exporter.set(NS, "jupyter-once", engine_active=0.9)
    pods = ["jupyter-idle", "jupyter-busy", "jupyter-once"]
    got = await known(prometheus.url, pods)
    idle, busy = got[f"{NS}/jupyter-idle"], got[f"{NS}/jupyter-busy"]
    assert idle == GpuReading(ENGINE, 0.0, idle.samples) and idle.samples >= 3
    assert busy.metric == ENGINE and busy.peak == pytest.approx(0.6) and busy.samples >= 3
    # the third goes quiet: a sample of 0 arrives, its busy samples are still in the window
    dcgm_exporter.set(NS, "jupyter-once", engine_active=0.0)
    await latest(prometheus, "jupyter-once", 0.0)
    once = (await gpu_readings(prometheus.url, NS, ["jupyter-once"], **FAST))[f"{NS}/jupyter-once"]
    assert once.known and once.peak == pytest.approx(0.9)


async def test_without_profiling_metrics_gpu_util_is_read(prometheus, dcgm_exporter):
    dcgm_exporter.profiling = False
    dcgm_exporter.set(NS, "jupyter-bob", engine_active=0.0, gpu_util=40)
    got = await known(prometheus.url, ["jupyter-bob"])
    assert got[f"{NS}/jupyter-bob"].metric == UTIL
    assert got[f"{NS}/jupyter-bob"].peak == pytest.approx(0.4)  # percent, read as a ratio


async def test_too_few_samples_or_none_is_not_known(prometheus, dcgm_exporter):
    dcgm_exporter.set(NS, "jupyter-new", engine_active=0.0)
    await latest(prometheus, "jupyter-new", 0.0)
    # ten minutes at one scrape a second: 300 samples needed, the pod has a handful
    got = await gpu_readings(
        prometheus.url, NS, ["jupyter-new", "jupyter-gone"], window_s=600, scrape_interval_s=1
    )
    new, gone = got[f"{NS}/jupyter-new"], got[f"{NS}/jupyter-gone"]
    assert not new.known and new.problem.endswith(f"samples of {ENGINE} in the window, 300 needed")
    assert gone == GpuReading(problem=NO_SERIES)


async def test_exported_pod_labels_are_read_where_the_scrape_renamed_them(
    prometheus, dcgm_exporter
):
    dcgm_exporter.set(NS, "jupyter-bob", engine_active=0.25)
    labels = {"pod_label": "exported_pod", "namespace_label": "exported_namespace"}
    got = await known(prometheus.url, ["jupyter-bob"], **labels)
    assert got[f"{NS}/jupyter-bob"].peak == pytest.approx(0.25)
    # that job's own pod and namespace labels are the exporter's
    series = prometheus.query(f'{ENGINE}{{exported_pod="jupyter-bob"}}')
    assert [(s["namespace"], s["pod"]) for s, _ in series] == [(EXPORTER_NAMESPACE, EXPORTER_POD)]


async def test_a_stopped_prometheus_is_not_known_with_the_reason(prometheus, dcgm_exporter):
    dcgm_exporter.set(NS, "jupyter-bob", engine_active=0.0)
    assert (await known(prometheus.url, ["jupyter-bob"]))[f"{NS}/jupyter-bob"].peak == 0.0
    prometheus.stop()
    got = await gpu_readings(prometheus.url, NS, ["jupyter-bob", "jupyter-ann"], **FAST)
    # tornado's own client says "refused"; curl (the hub image's) only "cannot connect"
    said = "cannot connect" if "Curl" in type(AsyncHTTPClient()).__name__ else "connection refused"
    refused = GpuReading(problem=f"Prometheus at {prometheus.url}: {said}")
    assert got == {f"{NS}/jupyter-bob": refused, f"{NS}/jupyter-ann": refused}
    assert await gpu_readings(prometheus.url, NS, [], **FAST) == {}  # nothing asked, no error


async def test_a_query_prometheus_refuses_is_not_known_with_its_error(prometheus):
    got = await gpu_readings(prometheus.url, NS, ["jupyter-bob"], pod_label="1pod", **FAST)
    problem = got[f"{NS}/jupyter-bob"].problem
    assert problem.startswith(f"Prometheus at {prometheus.url}: HTTP 400: ") and "parse" in problem
    assert "\n" not in problem


class _Junk(BaseHTTPRequestHandler):
    answers = {
        "/html": (200, b"<html><body>Bad gateway\n</body></html>"),
        "/down": (503, b"Service Unavailable"),
        "/error": (200, b'{"status": "error", "errorType": "timeout", "error": "query timed out"}'),
        "/matrix": (200, b'{"status": "success", "data": {"resultType": "matrix", "result": []}}'),
    }

    def log_message(self, *args):
        pass

    def do_GET(self):
        code, body = self.answers[self.path.split("/api/")[0]]
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def junk_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Junk)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("/html", "the answer is not JSON: b'<html><body>Bad gateway\\n</body></html>'"),
        ("/down", "HTTP 503"),
        ("/error", "the query failed: query timed out"),
        ("/matrix", "the result is a matrix"),
    ],
)
async def test_a_garbled_answer_is_not_known_with_the_reason(junk_server, path, said):
    url = junk_server + path
    got = await gpu_readings(url, NS, ["jupyter-bob"], **FAST)
    assert got == {f"{NS}/jupyter-bob": GpuReading(problem=f"Prometheus at {url}: {said}")}


async def test_a_prometheus_that_never_answers_is_not_known_after_the_timeout():
    with socket.socket() as listener:  # accepts connections (the backlog), answers none
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        got = await gpu_readings(url, NS, ["jupyter-bob"], timeout=0.5, **FAST)
    slow = GpuReading(problem=f"Prometheus at {url}: no answer in 0.5 s")
    assert got == {f"{NS}/jupyter-bob": slow}
