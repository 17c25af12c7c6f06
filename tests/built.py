"""What the harnesses of pinned Go components (tests/prometheus_harness.py,
tests/kueue_harness.py) share: the built binary, or a failure naming ``make k8s``, and
child processes that die with pytest."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path

import pytest

from mig_spawner.demo.controlplane.launcher import BUILD_COMMAND


def require_built(name: str, binary: Path) -> Path:
    """``binary`` if built; else the test fails (never skips) naming the build command."""
    if not os.access(binary, os.X_OK):
        pytest.fail(
            f"{name} is not built ({binary} missing): build it with `{BUILD_COMMAND}` "
            "(tests/controlplane/build.sh)",
            pytrace=False,
        )
    return binary


def die_with_parent() -> None:  # in the child, before exec: a killed pytest takes it along
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
