"""Kubernetes quantities as the emulator parses them, on their own."""

from __future__ import annotations

from fractions import Fraction

import pytest

from mig_spawner.demo.emulator.quantity import parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Fraction(1, 10)),
        ("2", 2),
        ("1Gi", 2**30),
        ("1G", 10**9),
        ("1e3", 1000),
        ("0.5", Fraction(1, 2)),
        (3, 3),
        ("512Ki", 512 * 1024),
    ],
)
def test_quantities(text, value):
    assert parse_quantity(text) == value


def test_bad_quantity():
    with pytest.raises(ValueError):
        parse_quantity("ten")
