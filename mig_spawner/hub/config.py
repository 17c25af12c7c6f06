"""MIGSpawner's policy settings as a hub's configuration holds them.

A hub configured with a malformed policy must not start: users would meet the error one
spawn at a time. JupyterHub gives a spawner class no start-up hook, but it does wait for
its managed services to come up and exits if one exits first: mig-spawner's service
(:mod:`.service`) builds the policy from the hub's settings with :func:`policy_from_config`
and, on a :class:`~mig_spawner.core.policy.ConfigError`, logs one line naming the setting
and the fix and exits 1 -- so the hub exits 1, before it serves anyone, with no traceback. A hub
without the service meets the same error at the first spawn (a refusal telling the user to
ask their admin, the error in the hub's log).

The same :func:`policy_settings` feeds ``mig-spawner explain``, so the CLI, the service
and the hub read a config file the same way.
"""

from __future__ import annotations

from typing import Any

from ..core.policy import POLICY_SETTINGS, Policy, policy_from_settings


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
