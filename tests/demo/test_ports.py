"""Ports for the hub, its proxy and the control plane: below the ephemeral range, each once;
and the machine's own (non-loopback) address, for EndpointSlices."""

from __future__ import annotations

import ipaddress
import socket
import subprocess

import pytest

from mig_spawner.demo import ports


def test_the_range_is_read_and_a_garbled_one_falls_back_to_linux_default():
    assert ports.ephemeral_range("32768\t60999\n") == (32768, 60999)
    assert ports.ephemeral_range("1024 65000") == (1024, 65000)
    assert ports.ephemeral_range("garbled") == (32768, 60999)
    assert ports.ephemeral_range("") == (32768, 60999)


def test_ports_come_from_below_the_ephemeral_range_and_never_twice():
    low, _ = ports.ephemeral_range()
    picked = [ports.free_port() for _ in range(300)]
    assert len(set(picked)) == len(picked)
    assert all(10000 <= port < low for port in picked), sorted(picked)[-3:]
    for port in picked[:20]:  # free: a server can bind each
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))


def test_a_port_somebody_listens_on_is_not_given(monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setattr(ports, "_LOWEST", taken)  # the only candidate below the range
        monkeypatch.setattr(ports, "ephemeral_range", lambda: (taken + 1000, 60999))
        choices = iter([taken] * 5 + [taken + 1])
        monkeypatch.setattr(ports.random, "choice", lambda _: next(choices))
        assert ports.free_port() == taken + 1


@pytest.mark.parametrize("low", [10000, 10500])
def test_no_room_below_the_range_lets_the_os_choose_still_once_each(monkeypatch, low):
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (low, 60999))
    picked = [ports.free_port() for _ in range(50)]
    assert len(set(picked)) == 50
    assert all(port >= low for port in picked)  # the OS's own choices


def test_the_host_address_is_one_of_this_machines_and_not_loopback():
    address = ports.host_address()
    assert not ipaddress.ip_address(address).is_loopback
    with socket.socket() as s:  # a server can listen there
        s.bind((address, 0))


def test_without_a_route_the_host_address_comes_from_ip(monkeypatch):
    class Unrouted(socket.socket):
        def connect(self, address):
            raise OSError(101, "Network is unreachable")

    listed = "2: eth0    inet 198.51.100.7/24 brd 198.51.100.255 scope global eth0\n"
    monkeypatch.setattr(ports.socket, "socket", Unrouted)
    monkeypatch.setattr(
        ports.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, listed, "")
    )
    assert ports.host_address() == "198.51.100.7"
