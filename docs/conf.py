"""Sphinx configuration of the mig-spawner documentation (MyST Markdown).

Build:  sphinx-build -W -b html docs docs/_build/html   (tests/docs/test_docs_build.py runs it)
"""

from __future__ import annotations

project = "mig-spawner"
author = "mig-spawner contributors"
copyright = "mig-spawner contributors"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
html_theme = "alabaster"
html_title = "mig-spawner"
html_static_path: list[str] = []
