"""Stopping an asyncio task for sure.

Python 3.11's :func:`asyncio.wait_for` drops a cancellation that arrives just as the call it
wraps returns (CPython issue 86296, fixed in 3.12): the task goes on as if never cancelled.
KubeSpawner wraps each API call in ``wait_for`` (the pod create, a watch's read), so one
``task.cancel()`` of a start or a watch is sometimes lost: a start then waited out the
whole ``start_timeout`` for a pod on a cordoned node, and a view's ``stop()`` could wait
for a watch that never ends. :func:`cancel_and_wait` repeats the cancellation until the
task has ended.
"""

from __future__ import annotations

import asyncio

#: seconds between two cancellations of a task that has not ended yet
RECANCEL_EVERY = 0.5


async def cancel_and_wait(task: asyncio.Future, every: float = RECANCEL_EVERY) -> None:
    """Cancel ``task`` and return once it has ended, however it ends (its result or
    error is consumed). If the caller is cancelled meanwhile, ``task`` is cancelled too
    and the caller's cancellation goes on."""
    try:
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=every)
    finally:
        if not task.done():
            task.cancel()
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit
