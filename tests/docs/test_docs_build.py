"""The documentation site builds with Sphinx + MyST, warnings as errors, and covers the pages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = [
    "index",
    "tutorial",
    "concepts",
    "howto/plain-jupyterhub",
    "deploy-z2jh",
    "howto/strategies",
    "howto/gpu-models",
    "howto/cpu-gpu-profiles",
    "howto/monitoring",
    "configuration",
    "cli",
    "metrics",
    "architecture",
]


def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in PAGES:
        assert (out / f"{page}.html").is_file(), page
    # every Markdown page under docs/ is in a toctree (Sphinx would warn otherwise), and
    # the images the pages use were copied
    assert (out / "_images" / "admin-slice-map.png").is_file()
    index = (out / "index.html").read_text()
    assert "Command-line reference" in index and "Configuration reference" in index
