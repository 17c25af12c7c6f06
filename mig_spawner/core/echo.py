"""User input quoted back in messages and logs: quoted, and cut to a sane length."""

from __future__ import annotations

from typing import Any

#: Longest piece of user input repeated in a message or log line.
ECHO_MAX = 64


def echo(value: Any, limit: int = ECHO_MAX) -> str:
    """``repr(value)``, at most ``limit`` characters of it plus "…" and the full length.

    ``echo("x" * 10_000)`` is ``'xxx…' (10000 characters)``: a forged option cannot
    flood the user's page, the hub's log or a pod annotation.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"
