"""pyproject.toml's version ranges say what CI tests, no wider.

CI runs the hub-level suite twice: on the Zero to JupyterHub 4.4 hub image's exact pins
(``make test-z2jh-pins``, .venv-z2jh) and on the newest releases (.venv, this process). So
each range starts at the image's pin and stops before the release series after the one this
venv runs.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
IMAGE_PINS = ROOT.parent / "shared" / "z2jh" / "hub-image-requirements.txt"
#: distribution -> how far past the newest tested release the range may reach
SERIES = {"jupyterhub": "minor", "jupyterhub-kubespawner": "minor", "kubernetes-asyncio": "major"}


def normalise(name: str) -> str:
    return name.lower().replace("_", "-")


def dependencies() -> dict[str, Requirement]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {normalise(r.name): r for r in map(Requirement, deps)}


def image_pins() -> dict[str, Version]:
    pins = {}
    for line in IMAGE_PINS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, _, pinned = line.partition("==")
            pins[normalise(name)] = Version(pinned.split(";")[0].strip())
    return pins


def bounds(req: Requirement) -> tuple[Version, Version]:
    lower = [Version(s.version) for s in req.specifier if s.operator == ">="]
    upper = [Version(s.version) for s in req.specifier if s.operator == "<"]
    assert len(lower) == 1 and len(upper) == 1, f"{req}: want one '>=' and one '<'"
    return lower[0], upper[0]


def test_ranges_start_at_the_hub_image_pins():
    deps, pins = dependencies(), image_pins()
    assert pins["jupyterhub"] == Version("5.5.0")
    assert pins["jupyterhub-kubespawner"] == Version("7.0.0")
    assert pins["kubernetes-asyncio"] == Version("36.1.0")
    for name in SERIES:
        lower, _ = bounds(deps[name])
        assert lower == pins[name], f"{deps[name]}: the hub image runs {pins[name]}"
        assert deps[name].specifier.contains(pins[name])


def test_ranges_stop_after_the_newest_tested_series():
    deps = dependencies()
    for name, series in SERIES.items():
        installed = Version(version(name))
        assert deps[name].specifier.contains(installed), f"{deps[name]} excludes {installed}"
        _, upper = bounds(deps[name])
        if series == "minor":
            expected = Version(f"{installed.major}.{installed.minor + 1}")
        else:
            expected = Version(f"{installed.major + 1}")
        assert upper == expected, f"{deps[name]}: tested up to {installed}, so '<{expected}'"
