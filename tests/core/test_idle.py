"""Idleness from the hub's activity and DCGM through Prometheus's answers: never "idle" on
anything short of a clear reading."""

from __future__ import annotations

import math

import pytest

from mig_spawner.core.errors import InputError
from mig_spawner.core.idle import (
    GpuReading,
    PrometheusAnswerError,
    judge,
    readings,
    vector,
)

ENGINE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
UTIL = "DCGM_FI_DEV_GPU_UTIL"


def answer(*series):
    """A Prometheus instant-query answer: (labels, value) per series."""
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": m, "value": [1765000000.0, v]} for m, v in series],
        },
    }


def pod(name, **more):
    return {"namespace": "jhub", "pod": name, **more}


def test_a_vector_is_read_with_its_labels_and_values():
    got = vector(answer((pod("jupyter-bob"), "0.25"), (pod("jupyter-ann"), "NaN")))
    assert got[0] == ({"namespace": "jhub", "pod": "jupyter-bob"}, 0.25)
    assert math.isnan(got[1][1])  # kept: the caller decides it is not a clear reading
    assert vector(answer()) == []


@pytest.mark.parametrize(
    ("body", "path", "said"),
    [
        ("<html>proxy error</html>", (), "not a JSON object"),
        ({"status": "error", "error": "parse error at char 4"}, ("status",), "parse error"),
        ({"status": "success", "data": {"resultType": "matrix"}}, ("data",), "a matrix"),
        ({"status": "success", "data": None}, ("data",), "NoneType"),
        ({"status": "success", "data": {"resultType": "vector"}}, ("data", "result"), "list"),
        (answer(({"pod": 3}, "1")), ("data", "result", 0, "metric"), "not strings"),
        (
            {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
            ("data", "result", 0, "value"),
            "[time, value]",
        ),
        (answer((pod("x"), "lots")), ("data", "result", 0, "value"), "'lots' is not a number"),
    ],
)
def test_an_answer_that_is_not_prometheus_vector_is_a_located_input_error(body, path, said):
    with pytest.raises(PrometheusAnswerError) as e:
        vector(body, source="http://prometheus:9090/api/v1/query")
    assert isinstance(e.value, InputError) and e.value.path == path
    assert said in str(e.value) and str(e.value).startswith("http://prometheus:9090")


def test_readings_per_pod_take_the_largest_value_and_the_fewest_samples():
    peaks = vector(
        answer(
            (pod("jupyter-bob", container="notebook", GPU_I_ID="1"), "0.004"),
            (pod("jupyter-bob", container="notebook", GPU_I_ID="2"), "0.30"),
            (pod("jupyter-ann"), "0"),
            ({"namespace": "jhub"}, "0.9"),  # no pod label: not a server's
        )
    )
    counts = vector(
        answer(
            (pod("jupyter-bob", GPU_I_ID="1"), "120"),
            (pod("jupyter-bob", GPU_I_ID="2"), "118"),
            (pod("jupyter-ann"), "120"),
        )
    )
    got = readings(peaks, counts, metric=ENGINE, min_samples=100)
    assert set(got) == {"jhub/jupyter-bob", "jhub/jupyter-ann"}
    assert got["jhub/jupyter-bob"] == GpuReading(ENGINE, 0.30, 118)
    assert got["jhub/jupyter-ann"] == GpuReading(ENGINE, 0.0, 120) and got["jhub/jupyter-ann"].known


def test_gpu_util_is_a_percentage_and_other_label_names_are_configurable():
    labels = {"exported_namespace": "jhub", "exported_pod": "jupyter-bob"}
    got = readings(
        vector(answer((labels, "12"))),
        vector(answer((labels, "60"))),
        metric=UTIL,
        pod_label="exported_pod",
        namespace_label="exported_namespace",
        min_samples=60,
    )
    assert got["jhub/jupyter-bob"] == GpuReading(UTIL, 0.12, 60)


@pytest.mark.parametrize(
    ("value", "count", "problem"),
    [
        ("NaN", "120", "read nan"),
        ("+Inf", "120", "read inf"),
        ("1.5", "120", "read 1.5"),  # a ratio above 1
        ("-0.1", "120", "read -0.1"),
        ("0", "3", "3 samples of DCGM_FI_PROF_GR_ENGINE_ACTIVE in the window, 100 needed"),
        ("0", None, "0 samples"),
    ],
)
def test_a_value_out_of_range_or_too_few_samples_is_not_known(value, count, problem):
    counts = [(pod("jupyter-bob"), float(count))] if count is not None else []
    got = readings([(pod("jupyter-bob"), float(value))], counts, metric=ENGINE, min_samples=100)
    reading = got["jhub/jupyter-bob"]
    assert not reading.known and reading.peak is None and problem in reading.problem


def test_a_pod_with_one_unclear_series_stays_unclear():
    peaks = [(pod("b", GPU_I_ID="1"), float("nan")), (pod("b", GPU_I_ID="2"), 0.0)]
    counts = [(pod("b"), 120.0)]
    assert not readings(peaks, counts, metric=ENGINE)["jhub/b"].known
    peaks.reverse()
    assert not readings(peaks, counts, metric=ENGINE)["jhub/b"].known


def test_idle_only_by_every_signal_that_exists_each_clear():
    quiet = GpuReading(ENGINE, 0.0, 120)
    rules = {"idle_after_s": 3600, "gpu_below": 0.01}
    idle = judge(3 * 3600, quiet, **rules)
    assert idle.idle and idle.shown == "idle 3 h, GPU 0 %"
    assert idle.reason == "no activity for 3 h, GPU at most 0 %"
    # no Prometheus configured: the hub's activity alone decides
    alone = judge(2 * 3600, None, **rules)
    assert alone.idle and alone.shown == "idle 2 h"
    # active lately, whatever the GPU says
    recent = judge(25 * 60, quiet, **rules)
    assert not recent.idle and recent.reason == "active 25 min ago"
    # the GPU worked in the window (a minute of training is enough)
    busy = judge(5 * 3600, GpuReading(ENGINE, 0.4, 120), **rules)
    assert not busy.idle and busy.reason == "GPU busy (up to 40 %)"
    assert busy.shown == "idle 5 h, GPU 40 %"
    # Prometheus down or the series garbled: not known idle, never idle
    unknown = judge(9 * 3600, GpuReading(problem="Prometheus unreachable: timed out"), **rules)
    assert not unknown.idle and "GPU activity unknown (Prometheus unreachable" in unknown.reason
    assert unknown.shown == "idle 9 h, GPU unknown"
    # no activity on record (a server that never reported): not idle
    never = judge(None, quiet, **rules)
    assert not never.idle and never.shown == "no activity recorded, GPU 0 %"
    assert not judge(math.nan, None, **rules).idle


def test_a_trace_of_activity_under_one_percent_is_said_so():
    low = judge(4 * 3600, GpuReading(ENGINE, 0.004, 120), idle_after_s=3600, gpu_below=0.01)
    assert low.idle and low.shown == "idle 4 h, GPU under 1 %"
