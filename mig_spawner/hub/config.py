"""MIGSpawner's policy settings as a hub's configuration holds them, and the check at start.

A hub that is configured with ``c.JupyterHub.spawner_class = "mig"`` (or
``"mig_spawner.MIGSpawner"``) and a malformed policy must not start: users would meet the
error one spawn at a time. JupyterHub resolves ``spawner_class`` while it loads its
config file, and offers no start-up hook to a spawner class, so that resolution
(:func:`mig_spawner.__getattr__`) calls :func:`check_at_hub_start`, which schedules
:func:`check_hub_config` on the hub's event loop; it runs once the config file has been
loaded, before the hub serves anything. A broken policy logs one line naming the setting
and the fix, then exits the hub with status 1 (no traceback).

The same :func:`policy_settings` feeds ``mig-spawner explain``, so the CLI and the hub
read a config file the same way.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from ..core.policy import POLICY_SETTINGS, ConfigError, Policy, policy_from_settings

log = logging.getLogger(__name__)
_checked: weakref.WeakSet = weakref.WeakSet()


def setting(section: Any, key: str, default: Any) -> Any:
    """``section[key]`` of a traitlets Config section, resolving ``.update()``/``.append()``."""
    from traitlets.config import LazyConfigValue

    if section is None or key not in section:
        return default
    value = section[key]
    if isinstance(value, LazyConfigValue):  # c.MIGSpawner.tiers.update({...})
        value = value.get_value(default)
    return value


def policy_settings(config: Any) -> dict[str, Any]:
    """The ``c.MIGSpawner`` policy settings of a traitlets Config, defaults filled in."""
    section = config.get("MIGSpawner") if config is not None else None
    return {key: setting(section, key, default) for key, default in POLICY_SETTINGS.items()}


def policy_from_config(config: Any) -> Policy | None:
    """The policy a hub with this config enforces; None with no tiers (plain KubeSpawner)."""
    settings = policy_settings(config)
    if not settings["tiers"]:
        return None
    return policy_from_settings(settings)


def check_hub_config(app: Any) -> None:
    """Exit the hub (status 1, one log line) if it spawns with MIGSpawner on a bad policy."""
    from .spawner import MIGSpawner

    spawner_class = getattr(app, "spawner_class", None)
    if not (isinstance(spawner_class, type) and issubclass(spawner_class, MIGSpawner)):
        return
    try:
        policy_from_config(app.config)
    except ConfigError as e:
        app.log.critical("mig-spawner: invalid configuration, the hub will not start: %s", e)
        raise SystemExit(1) from None


def check_at_hub_start() -> bool:
    """Schedule :func:`check_hub_config` for a hub that is loading its config right now.

    Returns whether a check was scheduled (once per hub application).
    """
    try:
        from jupyterhub.app import JupyterHub

        loop = asyncio.get_running_loop()
    except (ImportError, RuntimeError):
        return False
    if not JupyterHub.initialized():
        return False
    app = JupyterHub.instance()
    if app in _checked:
        return False
    _checked.add(app)
    loop.call_soon(check_hub_config, app)
    return True
