"""The pod IP allocator: two emulators on one machine never hand out the same address."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mig_spawner.demo.emulator.runtime import IPAllocator

# Clusters pick their block at random from 1-254: block 0 (127.0.0.2 up) is the tests' own.
BLOCK = 0
HOLD = """
import sys
from mig_spawner.demo.emulator.runtime import IPAllocator
ips = IPAllocator(block=int(sys.argv[1]))
print(ips.allocate(), flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def allocator():
    made: list[IPAllocator] = []

    def make() -> IPAllocator:
        made.append(IPAllocator(block=BLOCK))
        return made[-1]

    yield make
    for ips in made:
        ips.close()
    assert all(not ips.in_use for ips in made)


def test_two_allocators_in_one_block_hand_out_different_addresses(allocator):
    """Each cluster picks a random block; two that pick the same one must not collide."""
    first, second = allocator(), allocator()
    a, b = first.allocate(), second.allocate()
    assert (a, b) == ("127.0.0.2", "127.0.0.3")
    first.release(a)
    assert second.allocate() == a  # given back: free for anyone again
    assert first.allocate() == "127.0.0.4"


def test_an_address_held_by_another_process_is_skipped(allocator):
    """What the parallel test workers met: the other process's pod had its address but had
    not bound its port yet, so a free-port probe could not see it."""
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(BLOCK)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with other:
        held = other.stdout.readline().strip()
        assert held == "127.0.0.2"
        assert allocator().allocate(port=8888) == "127.0.0.3"
        other.stdin.close()
        assert other.wait(timeout=10) == 0
    assert allocator().allocate(port=8888) == held  # its process is gone


def test_release_of_an_unknown_or_missing_address_is_harmless(allocator):
    ips = allocator()
    ips.release(None)
    ips.release("127.0.9.9")
    assert ips.allocate() == "127.0.0.2"
