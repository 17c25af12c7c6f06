"""build.sh on a machine that has never built anything: the first run must succeed.

The bug this guards: the EXIT trap named a ``local`` of build(), unbound once the
function had returned, so under ``set -u`` every first build on an empty cache ended in
"tmp: unbound variable" (exit 2) after building everything; a second run passed. So the
test runs the real script, first run, on an empty cache, building the one tiny module
``MIG_SPAWNER_BUILD_ONLY=selftest`` names through the same build() and trap.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build.sh"


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        if os.environ.get("MIG_SPAWNER_REQUIRE_REAL_K8S"):
            pytest.fail("go is not on PATH; `make test` needs it to build the control plane")
        pytest.skip("go is not on PATH")
    return go


def _run(cache: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(BUILD)],
        env={**os.environ, "MIG_SPAWNER_K8S_CACHE": str(cache), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_first_build_on_an_empty_cache_exits_0(tmp_path):
    _go()
    cache = tmp_path / "empty-cache"  # not even created: build.sh makes it
    first = _run(cache, MIG_SPAWNER_BUILD_ONLY="selftest")
    assert first.returncode == 0, first.stderr
    assert "unbound variable" not in first.stderr
    assert "building selftest" in first.stderr
    assert first.stdout.strip().splitlines()[-1] == str(cache)
    binary = cache / "selftest"
    assert os.access(binary, os.X_OK)
    out = subprocess.run([binary], capture_output=True, text=True, check=True).stdout
    assert out == "build.sh selftest\n"
    assert (cache / ".selftest.stamp").read_text().startswith("selftest go")
    assert not list(cache.glob(".build.*")), "the EXIT trap left its temporary directory"
    # Only what BUILD_ONLY named was built.
    assert sorted(p.name for p in cache.iterdir()) == [".selftest.stamp", "selftest"]

    second = _run(cache, MIG_SPAWNER_BUILD_ONLY="selftest")
    assert second.returncode == 0, second.stderr
    assert "building" not in second.stderr  # already there: nothing rebuilt


def test_print_dir_needs_no_go(tmp_path):
    """`make demo` expands `build.sh --print-dir` on machines that may have no Go at all."""
    no_go = ":".join(
        d for d in os.environ["PATH"].split(":") if d and not (Path(d) / "go").exists()
    )
    env = {k: v for k, v in os.environ.items() if k != "MIG_SPAWNER_K8S_CACHE"}
    env.update(PATH=no_go, XDG_CACHE_HOME=str(tmp_path))
    done = subprocess.run(
        ["bash", str(BUILD), "--print-dir"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    version = next(
        line.split()[2]
        for line in (HERE / "kubernetes" / "go.mod").read_text().splitlines()
        if line.startswith("require k8s.io/kubernetes ")
    )
    assert done.stdout == f"{tmp_path}/mig-spawner/k8s-{version}\n"
    assert not (tmp_path / "mig-spawner").exists()  # printing the directory creates nothing
