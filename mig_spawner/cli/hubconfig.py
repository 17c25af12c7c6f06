"""Reading a ``jupyterhub_config.py`` the way JupyterHub does, without starting a hub.

:func:`load_config` executes the file with ``get_config`` and ``c`` bound, and
:func:`policy_from_config` / :func:`groups_from_config` read mig-spawner's settings and
the hub's ``load_groups`` from it. Errors are :class:`~mig_spawner.cli.snapshot.InputError`
naming ``file:line``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Mapping
from typing import Any

from ..core.policy import POLICY_SETTINGS, ConfigError, Policy, policy_from_settings
from ..hub.config import policy_settings, setting
from .snapshot import InputError, one_line

# --------------------------------------------------------------------------- config


def _error_line(path: str, exc: BaseException) -> int | None:
    """The line of ``path`` where ``exc`` was raised (innermost frame in that file)."""
    if isinstance(exc, SyntaxError) and exc.filename == path:
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == path:
            line = frame.lineno
    return line


def _describe_exception(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    if isinstance(exc, SystemExit):
        return f"the config called exit({exc.code!r})"
    text = one_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_config(path: str):
    """Execute a ``jupyterhub_config.py`` as JupyterHub does; return its ``Config``.

    The file runs with ``c`` and ``get_config()`` bound to one fresh
    :class:`traitlets.config.Config` (and ``load_subconfig`` for files next to it).
    Anything it prints goes to stderr, so ``--json`` output stays clean. Raises
    :class:`InputError` with ``file:line: error`` if it cannot be read or fails.
    """
    from traitlets.config import Config

    config = Config()
    _exec_config(path, config)
    return config


def _exec_config(path: str, config, *, depth: int = 0) -> None:
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        raise InputError(f"cannot read config {path}: {e.strerror or one_line(e)}") from None
    if depth > 10:
        raise InputError(f"{path}: load_subconfig nested too deeply")

    def load_subconfig(fname: str, profile: str | None = None) -> None:
        sub = fname if os.path.isabs(fname) else os.path.join(os.path.dirname(path), fname)
        _exec_config(sub, config, depth=depth + 1)

    namespace = {
        "c": config,
        "get_config": lambda: config,
        "load_subconfig": load_subconfig,
        "__file__": path,
        "__name__": "__main__",
    }
    try:
        code = compile(source, path, "exec", dont_inherit=True)
        with contextlib.redirect_stdout(sys.stderr):
            exec(code, namespace)
    except InputError:
        raise
    except (Exception, SystemExit) as e:
        line = _error_line(path, e)
        where = f"{path}:{line}" if line else path
        raise InputError(f"{where}: {_describe_exception(e)}") from None


__all__ = ["POLICY_SETTINGS", "groups_from_config", "load_config", "load_groups", "parse_groups"]


def policy_from_config(config: Any, *, source: str = "config") -> Policy:
    """Build the policy from ``c.MIGSpawner.*``, as the hub does; :class:`InputError` if invalid."""
    try:
        return policy_from_settings(policy_settings(config))
    except ConfigError as e:
        raise InputError(f"{source}: {one_line(e)}") from None


def _users_of(where: str, value: Any) -> list[str]:
    if isinstance(value, Mapping):  # JupyterHub >= 5: {"users": [...], "properties": {...}}
        value = value.get("users") or []
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise InputError(
            f"{where} must be a list of user names or a dict with a 'users' list, not {value!r}"
        )
    return [str(u) for u in value]


def load_groups(config: Any, *, source: str = "config") -> dict[str, list[str]]:
    """``c.JupyterHub.load_groups`` as ``{group: [users]}`` (either form JupyterHub accepts)."""
    groups = setting(config.get("JupyterHub"), "load_groups", {})
    if not isinstance(groups, Mapping):
        raise InputError(f"{source}: JupyterHub.load_groups must map group names to members")
    return {
        str(g): _users_of(f"{source}: JupyterHub.load_groups[{g!r}]", v) for g, v in groups.items()
    }


def groups_from_config(config: Any, user: str, *, source: str = "config") -> tuple[str, ...]:
    """The groups ``c.JupyterHub.load_groups`` puts ``user`` in, in the order listed."""
    return tuple(g for g, users in load_groups(config, source=source).items() if user in users)


def parse_groups(text: str) -> tuple[str, ...]:
    """``"vision, nlp"`` -> ``("vision", "nlp")``; an empty string is no groups."""
    seen: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if part and part not in seen:
            seen.append(part)
    return tuple(seen)
