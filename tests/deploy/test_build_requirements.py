"""The build requirements build: the lowest setuptools pyproject.toml allows builds the wheel.

pyproject.toml's SPDX ``license = "BSD-3-Clause"`` needs PEP 639 support in setuptools. This
installs exactly the lower bound of ``build-system.requires`` into a fresh venv and builds the
wheel with it (no build isolation, so no newer setuptools sneaks in), and checks that the
release before it fails on that very string, so the bound is the lowest that works.
Needs PyPI, as ``make install`` does.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
#: The setuptools release before the lower bound (77.0.0 was never published).
PREVIOUS = "76.1.0"


def lower_bound() -> str:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    (spec,) = [r for r in requires if r.startswith("setuptools")]
    match = re.fullmatch(r"setuptools>=([0-9.]+)", spec)
    assert match, f"build-system.requires should be 'setuptools>=X.Y.Z', not {spec!r}"
    return match.group(1)


def build_with(version: str, tmp: Path) -> subprocess.CompletedProcess:
    venv = tmp / f"setuptools-{version}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", f"setuptools=={version}", "wheel"], check=True, timeout=300)
    cmd = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(ROOT)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_lowest_allowed_setuptools_builds_the_wheel(tmp_path):
    version = lower_bound()
    done = build_with(version, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("jupyterhub_mig_spawner-*.whl")
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = z.read(meta).decode()
        names = z.namelist()
    assert "License-Expression: BSD-3-Clause" in metadata
    # package data the hub needs at run time is in the wheel
    assert "mig_spawner/core/data/catalog.json" in names
    assert "mig_spawner/hub/templates/mig-form.html" in names


def test_the_release_before_the_bound_cannot_build_it(tmp_path):
    done = build_with(PREVIOUS, tmp_path)
    assert done.returncode != 0
    assert "project.license" in done.stdout + done.stderr
