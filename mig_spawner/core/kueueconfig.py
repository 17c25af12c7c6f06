"""``MIGSpawner.kueue``: Kueue mode's one setting, and the names Kueue gives things.

The teams are the keys of ``local_queues`` (JupyterHub groups); in Kueue mode
``team_quotas`` and ``default_quota`` are refused: the teams' ClusterQueues hold the quota,
and two quota engines would give users untrue reasons. Errors are the policy's located
:class:`~.errors.ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import ConfigError

GROUP = "kueue.x-k8s.io"
VERSION = "v1beta2"
VISIBILITY_GROUP = "visibility.kueue.x-k8s.io"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
#: the scheduling gate Kueue's pod webhook puts on a pod it holds
GATE = "kueue.x-k8s.io/admission"
#: the pod condition Kueue sets on a pod it stops (reason and message: why)
TERMINATION_TARGET = "TerminationTarget"

SETTING = "MIGSpawner.kueue"
KEYS = ("local_queues", "default_local_queue", "priority_class")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


# ---------------------------------------------------------------------- the setting


@dataclass(frozen=True)
class KueueSettings:
    """``MIGSpawner.kueue``: which LocalQueue each team's notebooks go to."""

    #: team (JupyterHub group) -> LocalQueue name, in the admin's order: the teams
    local_queues: Mapping[str, str] = field(default_factory=dict)
    #: the LocalQueue of users in no team (None: their GPU spawns are refused)
    default_local_queue: str | None = None
    #: a WorkloadPriorityClass for the notebooks' Workloads (None: Kueue's default)
    priority_class: str | None = None

    def queue_for(self, team: str | None) -> str | None:
        return self.local_queues.get(team) if team else self.default_local_queue

    def labels(self, team: str | None) -> dict[str, str]:
        """The pod labels that hand it to Kueue ({} when the team has no queue)."""
        queue = self.queue_for(team)
        if queue is None:
            return {}
        labels = {QUEUE_LABEL: queue}
        if self.priority_class:
            labels[PRIORITY_LABEL] = self.priority_class
        return labels


def _name(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string (a Kubernetes object name), not {value!r}")
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
        raise ConfigError(
            f"{where} {value!r} is not a valid Kubernetes object name"
            " (DNS-1123: lower-case letters, digits, '-' and '.', at most 253 characters)"
        )
    return value


def parse_settings(
    value: Any, *, team_quotas: Any = None, default_quota: Any = None, backend: Any = None
) -> KueueSettings | None:
    """``MIGSpawner.kueue`` as :class:`KueueSettings`, None when empty (Kueue mode off).

    In Kueue mode the ClusterQueues hold the quota: ``team_quotas`` or ``default_quota``
    set beside it is refused (two quota engines would give users untrue reasons), and the
    teams are the keys of ``local_queues``."""
    if value is None or (isinstance(value, Mapping) and not value):
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{SETTING} must be a mapping like {{'local_queues': {{'vision': 'team-vision'}}}},"
            f" not {value!r}"
        )
    unknown = sorted(str(k) for k in value if k not in KEYS)
    if unknown:
        raise ConfigError(
            f"{SETTING} has unknown key(s) {', '.join(map(repr, unknown))}: use {', '.join(KEYS)}"
        )
    for other, given in (("team_quotas", team_quotas), ("default_quota", default_quota)):
        if given:
            raise ConfigError(
                f"MIGSpawner.{other} cannot be set with {SETTING}: in Kueue mode the teams'"
                " ClusterQueues hold the quota; remove MIGSpawner."
                f"{other} and set the quota in Kueue"
            )
    if backend == "dra":  # Kueue 0.17's pkg/dra: "FirstAvailable device selection is not supported"
        raise ConfigError(
            f"MIGSpawner.backend 'dra' cannot be used with {SETTING}: Kueue does not admit"
            " pods whose ResourceClaims list firstAvailable subrequests (the DRA backend's"
            " fallback); use backend 'device-plugin' with Kueue"
        )
    queues = value.get("local_queues") or {}
    if not isinstance(queues, Mapping):
        raise ConfigError(
            f"{SETTING}.local_queues must map JupyterHub group names to LocalQueue names,"
            f" not {queues!r}"
        )
    local_queues = {}
    for team, queue in queues.items():
        if queue is None:  # a Helm overlay's way to remove an entry
            continue
        if not isinstance(team, str) or not team:
            raise ConfigError(f"{SETTING}.local_queues: {team!r} is not a group name")
        local_queues[team] = _name(f"{SETTING}.local_queues[{team!r}]", queue)
    default = value.get("default_local_queue")
    priority = value.get("priority_class")
    settings = KueueSettings(
        local_queues=MappingProxyType(local_queues),
        default_local_queue=None
        if default is None
        else _name(f"{SETTING}.default_local_queue", default),
        priority_class=None if priority is None else _name(f"{SETTING}.priority_class", priority),
    )
    if not local_queues and settings.default_local_queue is None:
        raise ConfigError(
            f"{SETTING} needs local_queues (team -> LocalQueue) or a default_local_queue"
        )
    return settings
