"""Reading a ``jupyterhub_config.py`` the way JupyterHub does, without starting a hub.

:func:`load_config` executes the file with ``get_config`` and ``c`` bound (or, for Helm
values files, :func:`load_helm_values` reads ``hub.config`` as a Zero to JupyterHub hub
receives it), and
:func:`policy_from_config` / :func:`groups_from_config` read mig-spawner's settings and
the hub's ``load_groups`` from it. Errors are :class:`~mig_spawner.cli.snapshot.InputError`
naming ``file:line``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.errors import snippet
from ..core.pods import Trust
from ..core.policy import POLICY_SETTINGS, ConfigError, Policy, policy_from_settings
from ..hub.config import policy_settings, setting
from .locate import python_position, yaml_position, yaml_syntax_error
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


# --------------------------------------------------------------------------- Helm values

HELM_VALUES_SUFFIXES = (".yaml", ".yml")


def is_helm_values(path: str) -> bool:
    """A ``.yaml``/``.yml`` file is a Helm values file; anything else a jupyterhub_config.py."""
    return path.lower().endswith(HELM_VALUES_SUFFIXES)


def _helm_merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``helm -f base -f overlay``: maps merge key by key, anything else is replaced.

    A ``null`` is kept (Helm passes it on for keys the chart's defaults do not have, which
    is every key under ``hub.config.MIGSpawner``); mig-spawner reads it as absent.
    """
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _helm_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _sorted_maps(value: Any) -> Any:
    """What Helm's ``toYaml`` writes: every map with its keys sorted (lists keep order)."""
    if isinstance(value, Mapping):
        return {str(k): _sorted_maps(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted_maps(v) for v in value]
    return value


def load_helm_values(paths: Sequence[str]):
    """The ``Config`` a Zero to JupyterHub hub builds from these values files, in order.

    The files are merged as ``helm -f a.yaml -f b.yaml`` merges them; the hub then reads
    them back from the chart's Secret, where ``toYaml`` has sorted every map by key, and
    applies each ``hub.config`` section with ``c[Section].update(...)``. So this sees the
    same tier order and team precedence as the hub. An umbrella chart's values (the Z2JH
    values under a ``jupyterhub:`` key, with no ``hub:`` of their own) work too.
    """
    import yaml
    from traitlets.config import Config

    merged: dict[str, Any] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except OSError as e:
            raise InputError(f"cannot read values {path}: {e.strerror or one_line(e)}") from None
        except yaml.YAMLError as e:
            with open(path, encoding="utf-8", errors="replace") as f:
                raise yaml_syntax_error(path, f.read(), e) from None
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise InputError(f"{path}: a Helm values file must be a mapping at the top level")
        merged = _helm_merge(merged, data)
    if "hub" not in merged and isinstance(merged.get("jupyterhub"), Mapping):
        merged = merged["jupyterhub"]  # an umbrella chart's values for the Z2JH subchart
    hub = merged.get("hub")
    hub_config = hub.get("config") if isinstance(hub, Mapping) else None
    source = ", ".join(paths)
    if hub_config is None:
        hub_config = {}
    if not isinstance(hub_config, Mapping):
        raise InputError(f"{source}: hub.config must be a mapping of config sections")
    config = Config()
    for section, values in _sorted_maps(hub_config).items():
        if not section[:1].isupper() or not isinstance(values, Mapping):
            # the chart's jupyterhub_config.py exits on such a section; so do we
            raise InputError(
                f"{source}: hub.config.{section} is not a config section (sections are"
                " Configurable class names such as MIGSpawner, each a mapping)"
            )
        config[section] = Config(values)
    return config


def load_hub_config(paths: Sequence[str]):
    """One ``jupyterhub_config.py``, or one or more Helm values files (merged in order)."""
    if not paths:
        raise InputError("no config given")
    if all(is_helm_values(p) for p in paths):
        return load_helm_values(paths)
    if len(paths) == 1:
        return load_config(paths[0])
    raise InputError(
        "give one jupyterhub_config.py, or one or more Helm values files (.yaml), not both"
    )


__all__ = [
    "POLICY_SETTINGS",
    "groups_from_config",
    "load_config",
    "load_groups",
    "load_helm_values",
    "load_hub_config",
    "parse_groups",
    "trust_from_config",
]


def trust_from_config(config: Any) -> Trust:
    """Which pods the configured hub counts toward quotas (as ``MIGSpawner._trust``)."""
    section = config.get("MIGSpawner")
    kube = config.get("KubeSpawner")
    hub = setting(section, "hub_id", "jupyterhub")
    namespaces = setting(section, "quota_namespaces", None)
    if not namespaces:
        namespace = setting(section, "namespace", None) or setting(kube, "namespace", None)
        user_namespaces = setting(section, "enable_user_namespaces", None) or setting(
            kube, "enable_user_namespaces", False
        )
        namespaces = None if user_namespaces or not namespace else [namespace]
    ok_hub = hub if isinstance(hub, str) else None
    listed = isinstance(namespaces, list | tuple)
    ok_namespaces = frozenset(map(str, namespaces)) if listed else None
    return Trust(namespaces=ok_namespaces, hub=ok_hub)


def policy_from_config(config: Any, *, source: str = "config", files: Sequence[str] = ()) -> Policy:
    """Build the policy from ``c.MIGSpawner.*``, as the hub does. A bad setting raises its
    :class:`~mig_spawner.core.policy.ConfigError` (an InputError) at the line and column of
    ``files`` (the config or the values files it was read from) that set it."""
    try:
        return policy_from_settings(policy_settings(config))
    except ConfigError as e:
        raise locate_setting(e, files, source) from None


def locate_setting(error: InputError, files: Sequence[str], source: str) -> InputError:
    """``error`` at ``file:line:column`` of the last of ``files`` that sets its path."""
    for file in reversed(list(files)):
        try:
            with open(file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue
        if is_helm_values(file):
            position = yaml_position(text, ("hub", "config", *error.path), partial=False)
            if position is None and error.path:  # an umbrella chart's values
                path = ("jupyterhub", "hub", "config", *error.path)
                position = yaml_position(text, path, partial=False)
        else:
            position = python_position(text, error.path)
        if position is not None:
            line, column = position
            return error.at(f"{file}:{line}:{column}", snippet(text, line, column))
    return error.at(source)


def _users_of(where: str, value: Any) -> list[str]:
    if isinstance(value, Mapping):  # JupyterHub >= 5: {"users": [...], "properties": {...}}
        value = value.get("users") or []
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigError(
            f"{where} must be a list of user names or a dict with a 'users' list, not {value!r}"
        )
    return [str(u) for u in value]


def load_groups(
    config: Any, *, source: str = "config", files: Sequence[str] = ()
) -> dict[str, list[str]]:
    """``c.JupyterHub.load_groups`` as ``{group: [users]}`` (either form JupyterHub accepts)."""
    groups = setting(config.get("JupyterHub"), "load_groups", {})
    try:
        if not isinstance(groups, Mapping):
            raise ConfigError("JupyterHub.load_groups must map group names to members")
        return {str(g): _users_of(f"JupyterHub.load_groups[{g!r}]", v) for g, v in groups.items()}
    except ConfigError as e:
        raise locate_setting(e, files, source) from None


def groups_from_config(
    config: Any, user: str, *, source: str = "config", files: Sequence[str] = ()
) -> tuple[str, ...]:
    """The groups ``c.JupyterHub.load_groups`` puts ``user`` in, in the order listed."""
    groups = load_groups(config, source=source, files=files)
    return tuple(g for g, users in groups.items() if user in users)


def parse_groups(text: str) -> tuple[str, ...]:
    """``"vision, nlp"`` -> ``("vision", "nlp")``; an empty string is no groups."""
    seen: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if part and part not in seen:
            seen.append(part)
    return tuple(seen)
