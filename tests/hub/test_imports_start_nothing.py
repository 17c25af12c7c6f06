"""Importing any module of mig_spawner registers nothing and starts nothing.

Each check runs in a fresh interpreter. It first imports the third-party modules that
mig_spawner's modules import (JupyterHub registers its own metrics at import, KubeSpawner
patches its client), takes stock -- Prometheus collectors, tornado routes, threads, event
loops, asyncio tasks -- imports every module of mig_spawner and takes stock again. Then
it resolves ``mig_spawner.MIGSpawner`` (what JupyterHub does for ``spawner_class =
"mig"``) inside a running loop: nothing may be scheduled on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.hub

MODULES = """
import pkgutil, mig_spawner
names = ["mig_spawner"] + [  # every module; a __main__ is a script, run, not imported
    m.name for m in pkgutil.walk_packages(mig_spawner.__path__, "mig_spawner.")
    if not m.name.endswith(".__main__")
]
"""

# Which non-mig_spawner modules importing mig_spawner loads.
DEPENDENCIES = MODULES + textwrap.dedent(
    """
    import importlib, json, sys
    before = set(sys.modules)
    for name in names:
        importlib.import_module(name)
    print(json.dumps({"names": names, "deps": sorted(
        m for m in set(sys.modules) - before if not m.startswith("mig_spawner")
    )}))
    """
)

STOCK = textwrap.dedent(
    """
    import asyncio, gc, importlib, json, sys, threading
    from prometheus_client import REGISTRY
    from tornado.routing import Rule

    def stock():
        policy = asyncio.get_event_loop_policy()
        return {
            "collectors": sorted(
                ",".join(sorted(v)) for v in REGISTRY._collector_to_names.values()
            ),
            "routes": sum(1 for o in gc.get_objects() if isinstance(o, Rule)),
            "threads": sorted(t.name for t in threading.enumerate()),
            "loop_set": getattr(getattr(policy, "_local", None), "_loop", None) is not None,
        }

    deps, names = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    for dep in deps:
        try:
            importlib.import_module(dep)
        except Exception:
            pass  # optional back-ends of third-party packages
    gc.collect()
    before = stock()
    for name in names:
        importlib.import_module(name)
    gc.collect()
    after = stock()

    async def resolve():
        loop = asyncio.get_running_loop()
        import mig_spawner
        mig_spawner.MIGSpawner  # noqa: B018
        await asyncio.sleep(0)
        return {
            "tasks": len(asyncio.all_tasks()) - 1,
            "scheduled": len(getattr(loop, "_ready", ())) + len(getattr(loop, "_scheduled", ())),
        }

    print(json.dumps({"before": before, "after": after, "loop": asyncio.run(resolve())}))
    """
)


def _run(code: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_every_module_registers_and_starts_nothing():
    found = _run(DEPENDENCIES)
    assert "mig_spawner.hub.spawner" in found["names"]
    assert "mig_spawner.hub.service" in found["names"]
    assert "prometheus_client" in found["deps"]  # the stock below means something
    result = _run(STOCK, json.dumps(found["deps"]), json.dumps(found["names"]))
    before, after = result["before"], result["after"]
    assert after["collectors"] == before["collectors"]
    assert not any("mig_spawner" in c for c in after["collectors"])
    assert after["routes"] == before["routes"]
    assert after["threads"] == before["threads"]
    assert after["loop_set"] is False
    # resolving spawner_class = "mig" in a running hub loop schedules nothing on it
    assert result["loop"] == {"tasks": 0, "scheduled": 0}


def test_the_stock_sees_a_registration():
    """The check above can fail: registering the hub's series changes the stock."""
    marker = "gc.collect()\nafter = stock()"
    assert marker in STOCK
    code = STOCK.replace(
        marker, "from mig_spawner.hub import metrics\nmetrics.register(lambda: None)\n" + marker
    )
    found = _run(DEPENDENCIES)
    result = _run(code, json.dumps(found["deps"]), json.dumps(found["names"]))
    added = set(result["after"]["collectors"]) - set(result["before"]["collectors"])
    assert any("mig_spawner_decisions" in c for c in added), added
