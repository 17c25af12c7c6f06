"""hub/tasks.py: a task is stopped even when one cancellation is lost."""

from __future__ import annotations

import asyncio
import sys

import pytest

from mig_spawner.hub.tasks import cancel_and_wait

# A liveness bound, not a speed check: without the repeated cancel these tasks never end.
NEVER = 10


async def _reply_then_wait(reply: asyncio.Future, never: asyncio.Event, seen: list) -> None:
    """A start as KubeSpawner runs it: an API call in ``wait_for``, then a long wait."""
    seen.append(await asyncio.wait_for(reply, NEVER))
    await never.wait()


def _replied_and_cancelled(reply: asyncio.Future, task: asyncio.Task) -> None:
    """The API call's reply and the cancel arrive in the same turn of the loop."""
    reply.set_result("created")
    task.cancel()


async def test_python_3_11s_wait_for_drops_a_cancel_that_comes_with_the_reply():
    """The bug the module exists for, on this interpreter (fixed in Python 3.12)."""
    reply, never, seen = asyncio.get_running_loop().create_future(), asyncio.Event(), []
    task = asyncio.ensure_future(_reply_then_wait(reply, never, seen))
    await asyncio.sleep(0)  # the task is inside wait_for
    _replied_and_cancelled(reply, task)
    await asyncio.wait({task}, timeout=0.5)
    dropped = sys.version_info < (3, 12)
    assert task.done() is not dropped
    assert seen == (["created"] if dropped else [])
    await cancel_and_wait(task)


async def test_a_dropped_cancel_is_repeated_until_the_task_ends():
    reply, never, seen = asyncio.get_running_loop().create_future(), asyncio.Event(), []
    task = asyncio.ensure_future(_reply_then_wait(reply, never, seen))
    await asyncio.sleep(0)
    reply.set_result("created")
    await asyncio.wait_for(cancel_and_wait(task, every=0.05), NEVER)
    assert task.cancelled()


async def test_a_task_that_swallows_several_cancels_still_ends():
    swallowed = []

    async def stubborn():
        while len(swallowed) < 3:
            try:
                await asyncio.sleep(NEVER)
            except asyncio.CancelledError:
                swallowed.append(1)
        return "gave up"

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, every=0.05), NEVER)
    assert len(swallowed) == 3 and task.result() == "gave up"


async def test_an_error_the_task_ends_with_is_consumed_not_raised():
    async def fails_on_cancel():
        try:
            await asyncio.sleep(NEVER)
        except asyncio.CancelledError:
            raise ValueError("cleanup failed") from None

    task = asyncio.ensure_future(fails_on_cancel())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert isinstance(task.exception(), ValueError)


async def test_a_task_already_ended_is_left_as_it_is():
    task = asyncio.ensure_future(asyncio.sleep(0, result="done"))
    await task
    await cancel_and_wait(task)
    assert task.result() == "done"


async def test_cancelling_the_caller_cancels_the_task_and_goes_on():
    cancels, stop = [], asyncio.Event()

    async def ignores_cancels():
        while not stop.is_set():
            try:
                await stop.wait()
            except asyncio.CancelledError:
                cancels.append(1)

    task = asyncio.ensure_future(ignores_cancels())
    caller = asyncio.ensure_future(cancel_and_wait(task, every=NEVER))
    await asyncio.sleep(0.1)
    assert not caller.done() and not task.done() and len(cancels) == 1
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0.1)
    assert len(cancels) == 2  # the caller's own cancellation reached the task too
    stop.set()
    await task
