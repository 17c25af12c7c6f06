"""Free TCP ports for processes that bind them later (a hub, its proxy, etcd, kube-*).

A port the OS hands out for ``bind(0)`` comes from the ephemeral range, the same range it
draws from for every outgoing connection. Between our check and the child's bind, any
connection (a watch, a client of the API server) may take it: the child then fails with
EADDRINUSE. Ports below that range are never handed out for outgoing connections, so a
port picked there stays free unless somebody binds it on purpose. Each port is handed out
once per process, so two callers never get the same one.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000  # above the well-known and most registered service ports
_given: set[int] = set()


def ephemeral_range(text: str | None = None) -> tuple[int, int]:
    """The OS's range for outgoing connections' ports (Linux's default where unreadable)."""
    try:
        text = _RANGE_FILE.read_text() if text is None else text
        low, high = (int(part) for part in text.split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port(host: str = "127.0.0.1", *, tries: int = 200) -> int:
    """A port nobody listens on, below the ephemeral range, not given out before here."""
    low, _ = ephemeral_range()
    candidates = range(_LOWEST, low) if low - _LOWEST >= 1000 else range(0)
    for _ in range(tries if candidates else 0):
        port = random.choice(candidates)
        if port in _given:
            continue
        if _bindable(host, port):
            _given.add(port)
            return port
    while True:  # no room below the ephemeral range: let the OS choose, still once each
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _given:
            _given.add(port)
            return port


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def host_address() -> str:
    """This machine's IPv4 address on its network (not loopback), for what Kubernetes
    refuses loopback addresses in: an EndpointSlice's endpoints (the real control plane's
    APIService for Kueue's visibility API is reached there).

    The address the kernel would send from towards a public one (a UDP ``connect`` sends
    nothing); without a route there, the first global-scope address ``ip`` lists."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("203.0.113.1", 9))  # TEST-NET-3: never contacted, only routed
        address = s.getsockname()[0]
        if not address.startswith("127."):
            return address
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for line in out.splitlines():  # "2: eth0    inet 192.0.2.2/24 brd ... scope global eth0"
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    raise OSError("no non-loopback IPv4 address on this machine")
