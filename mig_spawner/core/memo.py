"""Caches for values derived from the cluster cache, kept by the module that derives them.

A derived value (a tier's chain, its chain rows, a user's form) is a function of the
cache's contents at one version and of some inputs (a tier, a policy, a user). Each module
that computes one keeps its own :class:`VersionMemo`, keyed by *values*: the cache's
``(token, version)`` and the inputs themselves (hashable value objects such as
:class:`~.policy.Tier`, or a :func:`fingerprint` of plain data) -- never ``id()``, which
Python reuses for a new object once the old one is gone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any


def fingerprint(value: Any, *, ordered: bool = False) -> str:
    """A canonical text of plain data: equal data -> equal text.

    Dicts compare whatever their order, unless ``ordered`` (where the order of a mapping
    means something, as the order of an admin's tiers does).
    """
    return repr(_canonical(value, ordered))


def _canonical(value: Any, ordered: bool) -> Any:
    if isinstance(value, Mapping):
        items = [(repr(_canonical(k, ordered)), _canonical(v, ordered)) for k, v in value.items()]
        return ("map", tuple(items if ordered else sorted(items, key=lambda kv: kv[0])))
    if isinstance(value, list | tuple):
        return tuple(_canonical(v, ordered) for v in value)
    if isinstance(value, set | frozenset):
        return ("set", tuple(sorted(repr(_canonical(v, ordered)) for v in value)))
    return value


class VersionMemo:
    """``compute()`` results per (cache version, key); only the last few versions are kept.

    ``version`` is a value such as ``(cache token, version)``: a new version starts an
    empty table, so nothing computed from an older state is ever returned for a newer one.
    """

    __slots__ = ("_keep", "_tables")

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self._tables: OrderedDict[Hashable, dict[Hashable, Any]] = OrderedDict()

    def get(self, version: Hashable, key: Hashable, compute: Callable[[], Any]) -> Any:
        table = self._tables.get(version)
        if table is None:
            table = self._tables[version] = {}
            while len(self._tables) > self._keep:
                self._tables.popitem(last=False)
        try:
            return table[key]
        except KeyError:
            value = table[key] = compute()
            return value

    def clear(self) -> None:
        self._tables.clear()
