"""The functional core imports no I/O or KubeSpawner machinery.

Two probes: every module in ``mig_spawner/core/`` (found by globbing the folder, not from
a list) is imported in a fresh interpreter and must leave no forbidden package in
``sys.modules``; and every ``import`` statement written in the folder must name the
standard library or another core module.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

CORE_DIR = Path(__file__).resolve().parents[2] / "mig_spawner" / "core"
CORE = sorted(p.stem for p in CORE_DIR.glob("*.py") if p.stem != "__init__")
FORBIDDEN = ["kubespawner", "kubernetes_asyncio", "tornado", "aiohttp", "jupyterhub", "requests"]
# The standard library modules the core may use for computing, not for I/O.
NO_IO_STDLIB = {"subprocess", "socket", "asyncio", "urllib", "http", "shutil", "tempfile"}


def test_the_core_folder_holds_the_decision_modules():
    assert {"catalog", "policy", "nodes", "pods", "cluster", "chains", "quota", "admission"} <= set(
        CORE
    )


def test_core_modules_import_no_io_or_kubespawner():
    code = (
        "import json, sys\n"
        + "".join(f"import mig_spawner.core.{m}\n" for m in CORE)
        + f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_core_import_statements_name_the_stdlib_or_the_core():
    bad = []
    for path in sorted(CORE_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    continue  # from .x import y: another core module
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names or top in NO_IO_STDLIB:
                    bad.append(f"{path.name}:{node.lineno} {name}")
    assert bad == []


def test_the_check_can_fail():
    """The spawner shell does import KubeSpawner: the same probe must see it."""
    code = (
        "import json, sys, mig_spawner.hub.spawner\nprint(json.dumps('kubespawner' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is True
