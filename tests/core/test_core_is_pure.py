"""The functional core imports no I/O or KubeSpawner machinery (checked in a fresh interpreter)."""

import json
import subprocess
import sys

CORE = [
    "catalog",
    "policy",
    "nodes",
    "pods",
    "cluster",
    "chains",
    "quota",
    "admission",
    "options",
    "form",
    "snapshot",
    "hubconfig",
    "explain",
]
FORBIDDEN = ["kubespawner", "kubernetes_asyncio", "tornado", "aiohttp", "jupyterhub", "requests"]


def test_core_modules_import_no_io_or_kubespawner():
    code = (
        "import json, sys\n"
        + "".join(f"import mig_spawner.{m}\n" for m in CORE)
        + f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_the_check_can_fail():
    """The spawner shell does import KubeSpawner: the same probe must see it."""
    code = "import json, sys, mig_spawner.spawner\nprint(json.dumps('kubespawner' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is True
