"""Container runtimes for the emulated kubelet, and the pod IP allocator.

* :class:`ProcessRuntime` runs a real process under :mod:`podinit` (a tini-like init that is
  a child subreaper, so it can kill every descendant, even ones that start their own
  session), in a new session. The init dies with the emulator (``PR_SET_PDEATHSIG``) and an
  ``atexit`` hook kills any pod still alive: no orphans, even if a cluster is never stopped.
* :class:`StubRuntime` serves a tiny aiohttp app on ``podIP:port`` that answers every request
  with 200 and a JSON body, which is all JupyterHub needs to see a server come up.

Every pod gets its own loopback address (127.0.0.0/8 is all loopback on Linux), handed out
lowest-free-first and reused once the pod is gone. An address whose port is already taken by
someone else on this machine is skipped, and so is one that another emulator on this machine
holds: each address handed out is locked in the kernel (see :class:`IPAllocator`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import json
import os
import random
import signal
import socket
import sys
import time
from typing import Any

from aiohttp import web

PODINIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "podinit.py")
_LIVE_INITS: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    """Last resort if a cluster was never stopped: kill every pod's processes."""
    for pid in list(_LIVE_INITS):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGUSR1)  # podinit: SIGKILL all descendants, then exit
    if _LIVE_INITS:
        time.sleep(0.2)
    for pid in list(_LIVE_INITS):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    _LIVE_INITS.clear()


# A UDP port outside Linux's ephemeral range (32768-60999). An allocator binds it on each
# address it hands out, without SO_REUSEADDR, and keeps it bound while the pod lives: that
# bind is the lock other processes' allocators meet. Pods serve TCP, so it is never in their way.
LOCK_PORT = 64_999


class IPAllocator:
    """Loopback addresses for pods, 127.<block>.<high>.<low>, never 127.0.0.1.

    Each cluster starts in its own randomly chosen block of 127.0.0.0/8, so two emulators on
    one machine (the demo while a test suite runs, or the suite's parallel workers) seldom
    look at the same addresses. When they do, the lock decides: an address is handed out only
    if this allocator could bind :data:`LOCK_PORT` on it, and it stays bound until
    :meth:`release`. The free-port probe alone could not see an address that another process
    has been given but whose pod has not bound its port yet (a real server takes seconds).
    """

    def __init__(self, block: int | None = None) -> None:
        self.in_use: dict[str, socket.socket] = {}
        self.block = random.randrange(1, 255) if block is None else block

    def _candidates(self):
        for high in range(256):
            for low in range(1, 255):
                if (self.block, high, low) != (0, 0, 1):
                    yield f"127.{self.block}.{high}.{low}"

    @staticmethod
    def port_free(ip: str, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((ip, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    return False
                raise
        return True

    @staticmethod
    def _lock(ip: str) -> socket.socket | None:
        lock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            lock.bind((ip, LOCK_PORT))
        except OSError as exc:
            lock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return None  # another emulator on this machine holds this address
            raise
        return lock

    def allocate(self, port: int | None = None) -> str:
        for ip in self._candidates():
            if ip in self.in_use or (port is not None and not self.port_free(ip, port)):
                continue
            lock = self._lock(ip)
            if lock is not None:
                self.in_use[ip] = lock
                return ip
        raise RuntimeError("no free loopback address for a pod")

    def release(self, ip: str | None) -> None:
        lock = self.in_use.pop(ip, None) if ip else None
        if lock is not None:
            lock.close()

    def close(self) -> None:
        """Give every address back (the pods' workers release theirs as they end)."""
        for ip in list(self.in_use):
            self.release(ip)


def exit_code(returncode: int) -> int:
    """A process's return code as a container exit code (killed by signal N -> 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


class ProcessRuntime:
    """Runs ``argv`` under :mod:`podinit` in a new session; ``pid`` is the init's, which is
    also the process group id."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str, log_path: str) -> None:
        self.argv, self.env, self.cwd, self.log_path = argv, env, cwd, log_path
        self.process: asyncio.subprocess.Process | None = None
        self.start_error: str | None = None
        self._done = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self) -> None:
        init = [sys.executable, "-I", "-S", PODINIT, str(os.getpid()), "--"]
        with open(self.log_path, "ab") as log:
            try:
                self.process = await asyncio.create_subprocess_exec(
                    *init,
                    *self.argv,
                    env=self.env,
                    cwd=self.cwd,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                self.start_error = f"failed to start {self.argv[0]!r}: {exc}"
                log.write(f"{self.start_error}\n".encode())
                return
        _LIVE_INITS.add(self.process.pid)

    async def wait(self) -> int:
        if self.process is None:
            return 128
        code = exit_code(await self.process.wait())
        self._finish()
        return code

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.process.pid, sig)

    def _finish(self) -> None:
        """The init is gone (and took its descendants along): sweep the process group once,
        for anything that slipped out, and forget it."""
        if self.process is None or self._done:
            return
        self._done = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        _LIVE_INITS.discard(self.process.pid)

    async def stop(self, grace: float) -> int:
        """SIGTERM everything, wait up to ``grace`` seconds, then SIGKILL everything."""
        if self.process is None:
            return 128
        self._signal(signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.process.wait()), max(grace, 0))
        self._signal(signal.SIGUSR1)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.process.wait()), 3)
        self._signal(signal.SIGKILL)
        code = exit_code(await self.process.wait())
        self._finish()
        return code


class StubRuntime:
    def __init__(self, ip: str, port: int, pod: dict[str, Any]) -> None:
        self.ip, self.port = ip, port
        self.identity = {
            "pod": pod["metadata"]["name"],
            "namespace": pod["metadata"].get("namespace"),
        }
        self._runner: web.AppRunner | None = None
        self._stopped = asyncio.Event()
        self.start_error: str | None = None
        self.pid = None

    async def _answer(self, request: web.Request) -> web.Response:
        body = {
            "status": "ok",
            "emulated": True,
            **self.identity,
            "method": request.method,
            "path": request.path,
        }
        return web.Response(body=json.dumps(body), content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.ip, self.port, reuse_address=True).start()
        except OSError as exc:
            self.start_error = f"stub server could not listen on {self.ip}:{self.port}: {exc}"
            await self._runner.cleanup()
            self._runner = None

    async def wait(self) -> int:
        if self._runner is None:
            return 128
        await self._stopped.wait()
        return 0

    async def stop(self, grace: float) -> int:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._stopped.set()
        return 0
