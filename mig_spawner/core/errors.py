"""One type for bad input: a hub setting, a catalog entry, a cluster file, a form field.

Every validator in mig-spawner raises :class:`InputError` (or a subclass named for what it
checks: :class:`~mig_spawner.core.policy.ConfigError`,
:class:`~mig_spawner.core.catalog.CatalogError`, the options' ``OptionsError``, the
emulator's ``ClusterSpecError``). Each carries

- ``message``: the one sentence a person reads, naming the setting and what it needs;
- ``path``: the keys from the document's root to the bad value, e.g.
  ``("MIGSpawner", "tiers", "notebook", "compute_slices")`` or ``("nodes", 2, "gpu")``;
- ``expected``: what would have been accepted, when one phrase says it;
- ``source``: where it was read, ``file``, ``file:line`` or ``file:line:column``, set by
  whoever read the file (core reads none: pure, no I/O).

``str(e)`` is ``"<source>: <message>"`` (just the message without a source), so messages
read as they always have. The CLI answers every InputError with exit status 2.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence

PathItem = str | int


class InputError(ValueError):
    """Input that cannot be used; ``str(e)`` names where and what was expected."""

    def __init__(
        self,
        message: str,
        *,
        path: Sequence[PathItem] | None = None,
        expected: str | None = None,
        source: str | None = None,
        detail: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.path: tuple[PathItem, ...] = tuple(path) if path is not None else ()
        self.expected = expected
        self.source = source
        #: extra lines shown under the message (e.g. the file's line with a caret)
        self.detail = detail

    def __str__(self) -> str:
        head = f"{self.source}: {self.message}" if self.source else self.message
        return f"{head}\n{self.detail}" if self.detail else head

    def at(self, source: str, detail: str = "") -> InputError:
        """A copy read from ``source`` (``file[:line[:column]]``), same type and facts."""
        located = copy.copy(self)
        located.source, located.detail = source, detail or self.detail
        return located

    def within(self, *prefix: PathItem) -> InputError:
        """The same error with ``prefix`` put before its path (an outer reader's keys)."""
        self.path = (*prefix, *self.path)
        return self


def format_path(path: Sequence[PathItem]) -> str:
    """``("nodes", 2, "mig", 0)`` -> ``nodes[2].mig[0]``."""
    out = ""
    for item in path:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out


_SEGMENT = re.compile(r"\.(\w+)|\[(?:'((?:[^'\\]|\\.)*)'|\"([^\"]*)\"|(\d+))\]")


def leading_path(text: str, root: str = r"[A-Z]\w*") -> tuple[PathItem, ...]:
    """The setting a message starts with: ``"MIGSpawner.tiers['a'].order must ..."`` ->
    ``("MIGSpawner", "tiers", "a", "order")``; ``()`` when it starts with none. ``root``
    (a regex) is what the first key looks like: a Configurable class name by default."""
    head = re.match(root, text)
    if head is None:
        return ()
    path: list[PathItem] = [head.group(0)]
    pos = head.end()
    while True:
        m = _SEGMENT.match(text, pos)
        if m is None:
            break
        name, single, double, index = m.groups()
        if name is not None:
            path.append(name)
        elif index is not None:
            path.append(int(index))
        else:
            path.append(single if single is not None else double)
        pos = m.end()
    return tuple(path)


def snippet(text: str, line: int, column: int) -> str:
    """Line ``line`` (1-based) of ``text`` with a caret under ``column`` (1-based)."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    gutter = f"{line:>5} | "
    return f"{gutter}{lines[line - 1]}\n{' ' * (len(gutter) - 2)}| {' ' * (column - 1)}^"


class ConfigError(InputError):
    """A mig-spawner setting is malformed. The message names the setting and the fix; the
    ``path`` (from the message's leading setting, e.g. ``("MIGSpawner", "tiers", "a")``)
    lets a reader of the config file point at the line."""

    def __init__(self, message: str, **kwargs):
        kwargs.setdefault("path", leading_path(message))
        super().__init__(message, **kwargs)
