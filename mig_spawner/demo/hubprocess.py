"""The demo's hub process: stop it, and what it started outside its process group.

JupyterHub starts configurable-http-proxy in a session of its own and stops it in its
cleanup. A hub that dies before that cleanup leaves the proxy running, holding the demo's
port and the terminal's output. That happens to a hub killed (the SIGKILL after a slow
stop, the OOM killer), and to one stopped in the moment after its routes are ready but
before its signal handlers are installed (JupyterHub installs them last in ``start()``,
so a Ctrl-C right after the banner met the default action). The demo therefore also
stops the proxy itself, from the pid file the hub wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

PROXY = "configurable-http-proxy"


async def terminate(proc: asyncio.subprocess.Process, grace: float = 15) -> None:
    """SIGTERM the hub's whole process group, then SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def _leftover(pid_file: Path, name: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and is ``name`` (not a reused pid)."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None  # no file (the hub stopped its proxy), garbled, or the process is gone
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            if name.encode() not in cmdline.read_bytes():
                return None
        except OSError:
            return None
    return pid


async def stop_leftover(pid_file: Path, name: str = PROXY, grace: float = 5) -> int | None:
    """Stop the process ``pid_file`` names, and its process group, if the hub left it
    running; SIGKILL after ``grace`` seconds. Returns its pid, or None if none was left."""
    pid = _leftover(pid_file, name)
    if pid is None:
        return None
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)  # started in a session of its own: it leads its group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
        deadline = asyncio.get_running_loop().time() + wait
        while asyncio.get_running_loop().time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return pid
            await asyncio.sleep(0.05)
    return pid
