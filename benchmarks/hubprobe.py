"""Runs inside the storm's hub process: where the hub's loop spends its time, and its GC.

* A sampling profiler: a thread looks at the main thread's (the event loop's) stack every
  ``INTERVAL`` seconds. A sample whose innermost frame is the selector's wait is idle;
  every other sample is charged to the package of the innermost frame that is not the
  standard library (so ``json``/``copy``/``asyncio`` called from mig-spawner count as
  mig-spawner's, and the loop's own scheduling as ``asyncio``). Unlike cProfile it
  costs the hub almost nothing, so both planes of the storm run with it, timed.
* ``gc.callbacks``: every collection's generation and length, and the tracked objects
  at the start of the storm.

The storm's jupyterhub_config.py imports this module and calls :func:`start` at the
storm's start; :func:`summary` is dumped next to the loop-lag probe's figures.
"""

from __future__ import annotations

import gc
import os
import sys
import sysconfig
import threading
import time
from collections import Counter

INTERVAL = 0.005
PACKAGES = (
    "mig_spawner",
    "kubespawner",
    "jupyterhub",
    "sqlalchemy",
    "tornado",
    "kubernetes_asyncio",
    "aiohttp",
    "traitlets",
    "jinja2",
)
_STDLIB = os.path.realpath(sysconfig.get_paths()["stdlib"])
_SITE = ("site-packages", "dist-packages")

_state: dict = {
    "samples": Counter(),
    "gc": {0: [], 1: [], 2: []},
    "running": False,
    "tracked_objects": 0,
}
_where_cache: dict[str, str] = {}


def _package(filename: str) -> str | None:
    """The package a code file belongs to; None for the standard library."""
    cached = _where_cache.get(filename)
    if cached is not None:
        return cached or None
    path = os.path.realpath(filename)
    where = ""
    parts = path.replace("\\", "/").split("/")
    for name in PACKAGES:
        if name in parts:
            where = name
            break
    else:
        if any(s in parts for s in _SITE) or not path.startswith(_STDLIB):
            where = "other"
    _where_cache[filename] = where
    return where or None


def _classify(frame) -> str:
    top = frame
    if top.f_code.co_name in ("select", "poll") and top.f_code.co_filename.endswith("selectors.py"):
        return "idle"
    while frame is not None:
        pkg = _package(frame.f_code.co_filename)
        if pkg is not None:
            return pkg
        frame = frame.f_back
    return "asyncio/stdlib"


def _sampler(main_id: int) -> None:
    samples = _state["samples"]
    while _state["running"]:
        time.sleep(INTERVAL)
        frame = sys._current_frames().get(main_id)
        if frame is not None:
            samples[_classify(frame)] += 1
        del frame


def _gc_callback(phase: str, info: dict) -> None:
    if phase == "start":
        _state["gc_started"] = time.perf_counter()
    elif "gc_started" in _state:
        _state["gc"][info["generation"]].append(time.perf_counter() - _state["gc_started"])


def start() -> None:
    """Reset and start both probes (called in the hub's main thread at the storm's start)."""
    _state["samples"].clear()
    for gen in _state["gc"].values():
        gen.clear()
    _state["tracked_objects"] = len(gc.get_objects())
    if _gc_callback not in gc.callbacks:
        gc.callbacks.append(_gc_callback)
    if not _state["running"]:
        _state["running"] = True
        threading.Thread(
            target=_sampler, args=(threading.main_thread().ident,), daemon=True
        ).start()


def summary() -> dict:
    samples = dict(_state["samples"])
    busy = sum(n for k, n in samples.items() if k != "idle")
    return {
        "interval_ms": INTERVAL * 1000,
        "samples": samples,
        "busy_samples": busy,
        "share_of_busy_loop": {k: n / busy for k, n in samples.items() if k != "idle" and busy},
        "tracked_objects_at_start": _state["tracked_objects"],
        "gc": {
            str(g): {
                "count": len(p),
                "max_ms": max(p) * 1000 if p else 0.0,
                "total_ms": sum(p) * 1000,
            }
            for g, p in _state["gc"].items()
        },
    }
