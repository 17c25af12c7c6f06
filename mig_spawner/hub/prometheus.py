"""The hub's reading of GPU activity from Prometheus, where it scrapes NVIDIA's dcgm-exporter.

:func:`gpu_readings` asks Prometheus's HTTP API (``/api/v1/query``) for each pod's largest
``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` over the window and its sample count, or, where that
profiling metric has no series in the namespace at all, ``DCGM_FI_DEV_GPU_UTIL``; the pure
:mod:`mig_spawner.core.idle` reads the answers. Whatever goes wrong (Prometheus down or
slow, an answer that is not Prometheus's, a query Prometheus refuses) every pod gets a
reading that is *not known*, with one line saying what happened: never "idle", never an
exception.

The label names are settings: dcgm-exporter scraped with ``honor_labels: false`` (a
ServiceMonitor without ``honorLabels``) has its ``pod`` and ``namespace`` labels renamed
``exported_pod`` and ``exported_namespace``.
"""

from __future__ import annotations

import asyncio
import json
import math
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ..core.idle import GPU_METRICS, GpuReading, PrometheusAnswerError, readings, vector

#: the problem of a pod with no series of either metric
NO_SERIES = "no DCGM series for it"


class _Unanswered(Exception):
    """Prometheus gave no usable answer; the message says why, in one line."""


def promql_string(value: str) -> str:
    """A PromQL string literal (double-quoted, Go escapes; JSON's are a subset)."""
    return json.dumps(value)


def duration(seconds: float) -> str:
    """A PromQL range: ``30s``, or ``1500ms`` for a window that is not whole seconds."""
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def queries(
    metric: str, namespace: str, window_s: float, *, pod_label: str, namespace_label: str
) -> tuple[str, str]:
    """The two instant queries for ``metric``: the window's largest value per pod, and the
    fewest samples of a series per pod."""
    selector = f"{metric}{{{namespace_label}={promql_string(namespace)}}}[{duration(window_s)}]"
    by = f"{namespace_label}, {pod_label}"
    return (
        f"max by ({by}) (max_over_time({selector}))",
        f"min by ({by}) (count_over_time({selector}))",
    )


def min_samples(window_s: float, scrape_interval_s: float, min_coverage: float) -> int:
    """Samples a series needs in the window: ``min_coverage`` of the scrapes, at least one."""
    return max(1, math.floor(window_s / scrape_interval_s * min_coverage + 1e-9))


def _one_line(text: object, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _failure(e: Exception, timeout: float) -> str:
    """What a failed fetch means, in a few words."""
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, asyncio.TimeoutError | TimeoutError):
        return f"no answer in {timeout:g} s"
    if isinstance(e, HTTPClientError):  # code 599: a timeout, or curl's connection errors
        said = _one_line(e.message or e)
        if "refused" in said.lower():
            return "connection refused"
        if "could not connect" in said.lower() or "couldn't connect" in said.lower():
            return "cannot connect"  # curl (the hub image's client) says no more than that
        if "timeout" in said.lower() or "timed out" in said.lower():
            return f"no answer in {timeout:g} s"
        return said
    if isinstance(e, OSError) and e.strerror:
        return _one_line(e.strerror.lower())
    return _one_line(f"{type(e).__name__}: {e}")


async def _query(
    client: AsyncHTTPClient, url: str, expr: str, timeout: float
) -> list[tuple[dict[str, str], float]]:
    endpoint = url.rstrip("/") + "/api/v1/query?" + urlencode({"query": expr})
    try:
        response = await client.fetch(
            endpoint, request_timeout=timeout, connect_timeout=timeout, raise_error=False
        )
    except Exception as e:  # every way of not answering is "not known"
        raise _Unanswered(_failure(e, timeout)) from None
    if response.code == 599 and response.error is not None:
        raise _Unanswered(_failure(response.error, timeout))
    body = response.body or b""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if response.code != 200:
        error = answer.get("error") if isinstance(answer, dict) else None
        raise _Unanswered(_one_line(f"HTTP {response.code}" + (f": {error}" if error else "")))
    if answer is None:
        raise _Unanswered(_one_line(f"the answer is not JSON: {body[:60]!r}"))
    try:
        return vector(answer)
    except PrometheusAnswerError as e:
        raise _Unanswered(_one_line(e.message)) from None


async def gpu_readings(
    url: str,
    namespace: str,
    pods: list[str],
    *,
    window_s: float,
    min_coverage: float = 0.5,
    scrape_interval_s: float = 15.0,
    pod_label: str = "pod",
    namespace_label: str = "namespace",
    timeout: float = 10.0,
    client: AsyncHTTPClient | None = None,
) -> dict[str, GpuReading]:
    """Each pod's GPU reading over the last ``window_s`` seconds, keyed ``"namespace/pod"``.

    A reading is known only with at least ``min_coverage`` of the window's scrapes (one
    every ``scrape_interval_s``, the scrape interval of dcgm-exporter's job). Raises
    ValueError for arguments out of range, nothing else.
    """
    if not (window_s > 0 and scrape_interval_s > 0 and 0 < min_coverage <= 1):
        raise ValueError("window_s and scrape_interval_s must be > 0, min_coverage in (0, 1]")
    keys = [f"{namespace}/{pod}" for pod in pods]
    if not keys:
        return {}
    need = min_samples(window_s, scrape_interval_s, min_coverage)
    client = client or AsyncHTTPClient()
    found: dict[str, GpuReading] = {}
    try:
        for metric in GPU_METRICS:
            exprs = queries(
                metric, namespace, window_s, pod_label=pod_label, namespace_label=namespace_label
            )
            answers = await asyncio.gather(
                *(_query(client, url, expr, timeout) for expr in exprs), return_exceptions=True
            )
            for answer in answers:
                if isinstance(answer, BaseException):
                    raise answer
            peaks, counts = answers
            if peaks:  # the metric has series in the namespace: it is the one that answers
                found = readings(
                    peaks,
                    counts,
                    metric=metric,
                    pod_label=pod_label,
                    namespace_label=namespace_label,
                    min_samples=need,
                )
                break
    except _Unanswered as e:
        problem = f"Prometheus at {url}: {e}"
        return {key: GpuReading(problem=problem) for key in keys}
    return {key: found.get(key) or GpuReading(problem=NO_SERIES) for key in keys}
