"""How long mig-spawner's hub-managed service lives: as long as the hub that started it.

JupyterHub stops its managed services in its cleanup. A hub that is killed (SIGKILL, the
OOM killer, or a stop in the moment before JupyterHub installs its signal handlers) never
gets there, and the service would go on holding its port and the output it inherited.
So the service watches for the hub to be gone. :func:`~.service.service` runs in the
hub's process (JupyterHub executes its config there) and passes the hub's pid on.
"""

from __future__ import annotations

import asyncio
import logging
import os

#: The hub's pid, in the service's environment
HUB_PID_ENV = "MIG_SPAWNER_HUB_PID"


def hub_pid() -> int | None:
    """The hub's pid from the environment; None if not started by ``service()``."""
    try:
        return int(os.environ[HUB_PID_ENV])
    except (KeyError, ValueError):
        return None


async def stop_when_orphaned(
    stop: asyncio.Event, hub: int | None, log: logging.Logger, every: float = 1.0
) -> None:
    """Set ``stop`` once the hub is gone. ``hub``: its pid, which may have died before
    this process got here; without it, the parent this process had when it started."""
    start = os.getppid()
    while not stop.is_set():
        if hub_gone(hub, start):
            log.warning("mig-spawner service: the hub (pid %d) is gone; stopping", hub or start)
            stop.set()
            return
        await asyncio.sleep(every)


def hub_gone(hub: int | None, start: int) -> bool:
    """Whether the hub has exited: this process was reparented since ``start`` (its
    parent then), or the hub's pid is no longer there."""
    if os.getppid() != start:
        return True
    if hub is None or hub == start:
        return False  # the hub is the parent, still there
    try:  # the hub exited before this process started, or it runs us through a wrapper
        os.kill(hub, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, though not ours to signal
        return False
    return False
