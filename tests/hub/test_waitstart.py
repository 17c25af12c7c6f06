"""A start's way through the waiting line (hub/waitstart.py), through a real JupyterHub over
real HTTP, on the emulator and the real control plane: the decision made before start() is
the one the start keeps, and max_wait running out ends the spawn with a clear message.
"""

from __future__ import annotations

import asyncio

import pytest
from hub_harness import pods_of, read_progress, spawn
from test_waiting import TIERS, fill, line_hub, line_of, messages_of, until

pytestmark = pytest.mark.hub


async def test_a_start_decides_once_before_start_and_keeps_that_decision(plane_hub, monkeypatch):
    """run_pre_spawn_hook decides; KubeSpawner's load_user_options reuses that claim."""
    from mig_spawner.core import admission

    app, cluster = await line_hub(plane_hub)
    calls = []
    admit = admission.admit

    def counting(request, policy, state, *, pod_key):
        calls.append(pod_key)
        return admit(request, policy, state, pod_key=pod_key)

    monkeypatch.setattr(admission, "admit", counting)
    await fill(app, users=("u1",))
    assert calls == ["jhub/jupyter-u1"]
    spawner = app.users["u1"].spawners[""]
    assert spawner.claim.state == "bound" and spawner.claim.grant["slice"] == "1g.10gb"
    (pod,) = pods_of(cluster, user="u1")
    assert pod["metadata"]["annotations"]["mig-spawner/node"] == "h"


async def test_max_wait_running_out_ends_the_spawn_with_a_clear_message(plane_hub):
    """Not counted as a hub failure (JupyterHub 5.5 counts every failed spawn otherwise)."""
    tiers = {**TIERS, "brief": {"display_name": "1g brief", "fallback": False, "max_wait": 3}}
    app, cluster = await line_hub(
        plane_hub,
        tiers=tiers,
        extra={
            "MIGSpawner": {"consecutive_failure_limit": 50},
            # answer the POST at once (202), not after 10 s: the wait is shorter than that
            "JupyterHub": {"tornado_settings": {"slow_spawn_timeout": 0}},
        },
    )
    await fill(app)
    ended = app.users["u1"].spawners[""].hub_metrics.line_ended.labels("brief", "timed_out")
    before = ended._value.get()
    events: list[dict] = []
    r = await spawn(app, "u3", {"tier": "brief"})
    assert r.status_code == 202, r.text
    await asyncio.wait_for(read_progress(app, "u3", events), 30)
    assert events[-1].get("failed"), events
    assert "waited 3 s, #1 in line; no 1g slice freed" in events[-1]["message"], events
    assert any(m.startswith("#1 in line for 1g brief (H100 80GB)") for m in messages_of(events))
    spawner = app.users["u3"].spawners[""]
    await until(lambda: not spawner.pending, what="the spawn ended")
    assert spawner.claim.state == "refused" and "waited 3 s" in spawner.claim.reason
    assert app.tornado_application.settings.get("failure_count", 0) == 0
    assert ended._value.get() == before + 1
    assert len(line_of(app).line) == 0 and not pods_of(cluster, user="u3")
