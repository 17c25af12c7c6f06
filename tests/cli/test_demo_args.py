"""``mig-spawner demo``'s arguments (cli/demo.py): ``--reclaim IDLE,GRACE`` checked, exit 2."""

from __future__ import annotations

import argparse
import importlib.machinery
import re
import sys
import types

import pytest

from mig_spawner.cli.demo import seconds_pair


def test_reclaim_takes_idle_and_grace_in_seconds():
    assert seconds_pair("180,60") == (180.0, 60.0)
    assert seconds_pair("6,0") == (6.0, 0.0)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("180", "'180' is not IDLE,GRACE (e.g. 180,60)"),
        ("a,b", "'a,b' is not IDLE,GRACE"),
        ("1,2,3", "is not IDLE,GRACE"),
        ("0,60", "IDLE must be above 0 and GRACE 0 or more"),
        ("60,-1", "IDLE must be above 0 and GRACE 0 or more"),
        ("inf,1", "IDLE must be above 0"),
    ],
)
def test_a_bad_reclaim_is_refused_with_the_value(text, said):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(said)):
        seconds_pair(text)


def test_the_demo_gets_the_reclaim_and_bad_input_exits_2(cli, monkeypatch):
    got = []
    fake = types.ModuleType("mig_spawner.demo.command")
    fake.__spec__ = importlib.machinery.ModuleSpec("mig_spawner.demo.command", loader=None)
    fake.main = lambda args: got.append(args.reclaim) or 0
    monkeypatch.setitem(sys.modules, "mig_spawner.demo.command", fake)
    assert cli("demo", "--reclaim", "20,5").code == 0
    assert cli("demo").code == 0
    assert got == [(20.0, 5.0), None]  # None: the demo's own 180,60
    r = cli("demo", "--reclaim", "5")
    assert r.code == 2 and "argument --reclaim: '5' is not IDLE,GRACE" in r.err
