"""The dcgm-exporter stand-in: its exposition text, its pods, its control endpoint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from mig_spawner.demo.dcgm import ENGINE_ACTIVE, GPU_UTIL, LABELS, DcgmExporter, Instance, render
from mig_spawner.demo.ports import free_port

SAMPLE = re.compile(r'^(\w+)\{((?:\w+="(?:[^"\\]|\\.)*",?)*)\} (\S+)$')


def parse(text: str) -> dict[tuple[str, str, str], tuple[dict[str, str], float]]:
    """(metric, namespace, pod) -> (labels, value) of every sample line; HELP/TYPE checked."""
    out = {}
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind == "gauge"
            typed.add(name)
            continue
        if line.startswith("# HELP "):
            continue
        m = SAMPLE.match(line)
        assert m, line
        assert m.group(1) in typed  # TYPE comes before the samples
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
        out[m.group(1), labels["namespace"], labels["pod"]] = (labels, float(m.group(3)))
    return out


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return r.read().decode()


def post(url: str, body) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_series_carry_the_exporters_labels_in_its_order():
    text = render([Instance("jhub", "jupyter-bob", "2g.20gb", 3, 0.25, 31.0)])
    assert f"# HELP {ENGINE_ACTIVE} Ratio of time the graphics engine is active." in text
    assert f"# TYPE {GPU_UTIL} gauge" in text
    got = parse(text)
    labels, value = got[ENGINE_ACTIVE, "jhub", "jupyter-bob"]
    assert list(labels) == list(LABELS) and value == 0.25
    assert labels["GPU_I_PROFILE"] == "2g.20gb" and labels["GPU_I_ID"] == "3"
    assert labels["UUID"].startswith("GPU-") and labels["device"] == "nvidia0"
    assert got[GPU_UTIL, "jhub", "jupyter-bob"][1] == 31.0
    # without profiling only the utilisation is served
    off = render([Instance("jhub", "jupyter-bob", "1g.10gb", 1, 0.25, 31.0)], profiling=False)
    assert ENGINE_ACTIVE not in off and set(parse(off)) == {(GPU_UTIL, "jhub", "jupyter-bob")}


def test_a_label_value_is_escaped():
    text = render([Instance("jhub", 'a"b\\c', "1g.10gb", 1, 0.0, 0.0)])
    assert 'pod="a\\"b\\\\c"' in text
    assert parse(text)[ENGINE_ACTIVE, "jhub", 'a\\"b\\\\c'][1] == 0.0


def test_set_and_remove_change_what_is_served():
    with DcgmExporter() as exporter:
        first = exporter.set("jhub", "jupyter-bob", engine_active=0.5)
        exporter.set("jhub", "jupyter-ann", engine_active=0.0, gpu_util=7)
        again = exporter.set("jhub", "jupyter-bob", engine_active=0.9)
        assert again.gpu_i_id == first.gpu_i_id  # the pod keeps its instance
        got = parse(get(exporter.url + "/metrics"))
        assert got[ENGINE_ACTIVE, "jhub", "jupyter-bob"][1] == 0.9
        assert got[GPU_UTIL, "jhub", "jupyter-bob"][1] == 90.0  # from the ratio
        assert got[GPU_UTIL, "jhub", "jupyter-ann"][1] == 7.0
        assert exporter.remove("jhub", "jupyter-bob") is True
        assert exporter.remove("jhub", "jupyter-bob") is False
        got = parse(get(exporter.url + "/metrics"))
        assert {pod for _, _, pod in got} == {"jupyter-ann"}
        exporter.profiling = False
        assert set(parse(get(exporter.url + "/metrics"))) == {(GPU_UTIL, "jhub", "jupyter-ann")}
        assert exporter.scrapes == 3
        with pytest.raises(urllib.error.HTTPError) as e:
            get(exporter.url + "/other")
        assert e.value.code == 404


def test_the_json_control_endpoint_sets_and_refuses():
    with DcgmExporter() as exporter:
        code, body = post(exporter.url + "/set", {"namespace": "jhub", "pod": "p", "gpu_util": 40})
        assert code == 200 and body == {"gpu_i_id": 1}
        assert parse(exporter.metrics())[GPU_UTIL, "jhub", "p"][1] == 40.0
        for bad, said in [
            ({"namespace": "jhub", "pod": "p", "engine_active": 2}, "from 0 to 1"),
            ({"namespace": "jhub", "pod": "p", "engine_active": True}, "from 0 to 1"),
            ({"namespace": "jhub", "pod": "p", "colour": "red"}, "unknown keys: colour"),
            ({"pod": "p"}, "needs a namespace"),
            ([1], "needs a namespace"),
        ]:
            code, body = post(exporter.url + "/set", bad)
            assert code == 400 and said in body["error"], bad
        assert post(exporter.url + "/remove", {"namespace": "jhub", "pod": "p"}) == (
            200,
            {"removed": True},
        )
        assert post(exporter.url + "/nothing", {"namespace": "jhub", "pod": "p"})[0] == 404
        assert "pod=" not in exporter.metrics()


def test_the_command_serves_on_the_port_it_is_given():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mig_spawner.demo.dcgm", "--port", str(port), "--no-profiling"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}/metrics" in line
        assert post(f"http://127.0.0.1:{port}/set", {"namespace": "n", "pod": "p"})[0] == 200
        assert set(parse(get(f"http://127.0.0.1:{port}/metrics"))) == {(GPU_UTIL, "n", "p")}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
