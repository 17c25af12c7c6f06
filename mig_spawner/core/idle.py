"""Is a GPU server idle? Two signals, read the way the idle culler and gpu-pruner read them.

1. **The hub's activity**: JupyterHub's ``last_activity`` of the server (kernels,
   terminals and connections, as the single-user server reports them and as the idle
   culler reads them).
2. **The GPU's own activity**, where a Prometheus scrapes NVIDIA's DCGM exporter: the
   largest value over a window of ``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` (a ratio, 0-1, per MIG
   instance), or ``DCGM_FI_DEV_GPU_UTIL`` (a percentage) where profiling metrics are off.
   The largest, not the mean: a server that trained for one minute in the window was not
   idle in it.

A server is idle when every signal that exists says so. Anything short of a clear reading
is *not known idle*, never idle: a Prometheus that does not answer, an answer that is not
Prometheus's, a series with too few samples to cover the window, a value that is not a
number. Pure: the hub passes what it read (the decoded JSON of the HTTP API) and the clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InputError

#: the DCGM series, in the order they are asked for, and the scale of each (to a ratio)
GPU_METRICS: Mapping[str, float] = {
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": 1.0,
    "DCGM_FI_DEV_GPU_UTIL": 100.0,
}


class PrometheusAnswerError(InputError):
    """An answer that is not a Prometheus instant-query vector."""


@dataclass(frozen=True)
class GpuReading:
    """One server's GPU activity over the window, or why it is not known."""

    metric: str = ""  # the series that answered ("" when none did)
    peak: float | None = None  # the largest value in the window, as a ratio (0-1)
    samples: int = 0  # samples in the window
    problem: str = ""  # why not known ("" when known)

    @property
    def known(self) -> bool:
        return not self.problem and self.peak is not None


@dataclass(frozen=True)
class Idleness:
    """What the signals say of one server."""

    idle: bool  # idle by every signal that exists, each read clearly
    hub_idle_s: float | None  # seconds since the hub's last activity (None: never seen)
    gpu: GpuReading | None  # None: no Prometheus configured
    reason: str  # why idle, or why not (one clause)

    @property
    def shown(self) -> str:
        """As a user and an admin read it: "idle 3 h, GPU 0 %"."""
        parts = []
        if self.hub_idle_s is not None:
            parts.append(f"idle {duration(self.hub_idle_s)}")
        else:
            parts.append("no activity recorded")
        if self.gpu is not None:
            if self.gpu.known:
                parts.append(f"GPU {percent(self.gpu.peak)}")
            else:
                parts.append("GPU unknown")
        return ", ".join(parts)


def vector(answer: Any, source: str = "Prometheus") -> list[tuple[dict[str, str], float]]:
    """(labels, value) of each series of an instant query's answer (``/api/v1/query``).

    Raises :class:`PrometheusAnswerError` for an answer that is not a successful vector:
    an error status (with Prometheus's own ``error``), another result type, a series
    without labels or a value pair, a value that is not a number. A value Prometheus
    writes as "NaN" or "+Inf" is kept: the caller decides (it is not a clear reading).
    """

    def bad(message: str, path: tuple, expected: str) -> PrometheusAnswerError:
        return PrometheusAnswerError(message, path=path, expected=expected, source=source)

    if not isinstance(answer, Mapping):
        raise bad("the answer is not a JSON object", (), "an object with status and data")
    if answer.get("status") != "success":
        error = answer.get("error") or answer.get("errorType") or "no reason given"
        raise bad(f"the query failed: {error}", ("status",), '"success"')
    data = answer.get("data")
    kind = data.get("resultType") if isinstance(data, Mapping) else None
    if kind != "vector":
        raise bad(f"the result is a {kind or type(data).__name__}", ("data",), "a vector")
    result = data.get("result")
    if not isinstance(result, list):
        raise bad("the result is not a list", ("data", "result"), "a list of series")
    out = []
    for i, series in enumerate(result):
        at = ("data", "result", i)
        labels = series.get("metric") if isinstance(series, Mapping) else None
        value = series.get("value") if isinstance(series, Mapping) else None
        if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise bad("a series' labels are not strings", (*at, "metric"), "a map of strings")
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise bad("a series has no [time, value] pair", (*at, "value"), "[time, value]")
        try:
            number = float(value[1])
        except (TypeError, ValueError):
            raise bad(f"value {value[1]!r} is not a number", (*at, "value"), "a number") from None
        out.append((dict(labels), number))
    return out


def readings(
    peaks: list[tuple[dict[str, str], float]],
    counts: list[tuple[dict[str, str], float]],
    *,
    metric: str,
    pod_label: str = "pod",
    namespace_label: str = "namespace",
    min_samples: int = 1,
) -> dict[str, GpuReading]:
    """Per pod ("namespace/name"): its reading of ``metric`` from two answers, the
    window's largest value and its sample count per series.

    A pod with several series (a container per MIG device) takes the largest value and
    the fewest samples. A value that is not finite, or outside the metric's range, makes
    the pod's reading not known; so do fewer than ``min_samples`` samples.
    """
    scale = GPU_METRICS[metric]
    out: dict[str, GpuReading] = {}
    count_of: dict[str, float] = {}
    for labels, count in counts:
        key = _pod_key(labels, pod_label, namespace_label)
        if key is not None:
            count_of[key] = min(count, count_of.get(key, math.inf))
    for labels, value in peaks:
        key = _pod_key(labels, pod_label, namespace_label)
        if key is None:
            continue
        samples = count_of.get(key, 0)
        earlier = out.get(key)
        if earlier is not None and earlier.problem:
            continue
        if not math.isfinite(value) or not 0 <= value <= scale:
            out[key] = GpuReading(metric, None, int(samples), f"{metric} read {value!r}")
            continue
        if not math.isfinite(samples) or samples < min_samples:
            problem = f"{int(samples) if math.isfinite(samples) else 0} samples of {metric}"
            out[key] = GpuReading(metric, None, 0, f"{problem} in the window, {min_samples} needed")
            continue
        peak = value / scale
        if earlier is not None and earlier.peak is not None:
            peak = max(peak, earlier.peak)
            samples = min(samples, earlier.samples)
        out[key] = GpuReading(metric, peak, int(samples))
    return out


def judge(
    hub_idle_s: float | None,
    gpu: GpuReading | None,
    *,
    idle_after_s: float,
    gpu_below: float,
) -> Idleness:
    """Whether a server is idle: the hub saw no activity for ``idle_after_s`` and, where a
    GPU reading exists (``gpu`` not None: Prometheus is configured), its largest activity
    in the window stayed under ``gpu_below`` (a ratio) by a clear reading."""
    if hub_idle_s is None or not math.isfinite(hub_idle_s):
        return Idleness(False, None, gpu, "the hub has no activity on record for it")
    if hub_idle_s < idle_after_s:
        return Idleness(False, hub_idle_s, gpu, f"active {duration(hub_idle_s)} ago")
    if gpu is not None:
        if not gpu.known:
            return Idleness(False, hub_idle_s, gpu, f"GPU activity unknown ({gpu.problem})")
        if gpu.peak >= gpu_below:
            return Idleness(False, hub_idle_s, gpu, f"GPU busy (up to {percent(gpu.peak)})")
    why = f"no activity for {duration(hub_idle_s)}"
    if gpu is not None:
        why += f", GPU at most {percent(gpu.peak)}"
    return Idleness(True, hub_idle_s, gpu, why)


def _pod_key(labels: Mapping[str, str], pod_label: str, namespace_label: str) -> str | None:
    pod, namespace = labels.get(pod_label), labels.get(namespace_label)
    return f"{namespace}/{pod}" if pod and namespace else None


def duration(seconds: float) -> str:
    """3 h, 25 min, 40 s: the largest whole unit."""
    seconds = max(seconds, 0)
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def percent(ratio: float | None) -> str:
    if ratio is None:
        return "unknown"
    shown = ratio * 100
    return f"{shown:.0f} %" if shown >= 1 or shown == 0 else "under 1 %"
