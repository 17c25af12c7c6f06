"""gc_freeze_after_list: the hub freezes the heap once, after its first list of pods."""

from __future__ import annotations

import gc

import pytest
from hub_harness import spawn, wait_ready


@pytest.fixture
def unfrozen():
    gc.unfreeze()  # the test process may hold an earlier freeze: count from zero
    yield
    gc.unfreeze()  # give the test process its collector back


async def _first_list(app):
    view = app.users["bob"].spawner.cluster_view()
    assert await view.wait_known(10), view.problem
    return view


async def test_the_first_pods_list_freezes_the_heap_and_a_relist_does_not(hub, unfrozen):
    assert gc.get_freeze_count() == 0
    app, _ = await hub(gc_freeze_after_list=True)
    view = await _first_list(app)
    frozen = gc.get_freeze_count()
    assert frozen > 10_000  # the hub's imports and the first list, at least
    pods = next(feed for feed in view._feeds if feed.kind == "pods")
    assert pods.relists == 1
    gc.unfreeze()
    await pods._list()  # a relist (after a 410 Gone or an error): no second freeze
    assert pods.relists == 2 and gc.get_freeze_count() == 0
    # the hub still spawns with the heap frozen
    gc.freeze()
    assert (await spawn(app, "bob", {"tier": "notebook"})).status_code in (201, 202)
    await wait_ready(app, "bob")


async def test_with_the_setting_off_nothing_is_frozen(hub, unfrozen):
    app, _ = await hub(gc_freeze_after_list=False)
    view = await _first_list(app)
    assert next(f for f in view._feeds if f.kind == "pods").relists == 1
    assert gc.get_freeze_count() == 0
