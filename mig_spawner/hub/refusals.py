"""Refusals: the hub saying no on purpose, and JupyterHub not counting them as failures."""

from __future__ import annotations

from ..core import admission
from .hubcompat import SpawnException, not_a_failure

STATUS = {
    admission.UNKNOWN_TIER: 400,
    admission.FORBIDDEN_TIER: 403,
    admission.NOT_IN_TEAM: 403,
    admission.QUOTA: 403,
    admission.CAPACITY: 503,
    admission.NO_MATCHING_GPU: 503,
    admission.NO_QUEUE: 403,
}


#: Refusals: the hub said no on purpose. They are never counted toward
#: ``consecutive_failure_limit`` (Z2JH sets 5: five quota refusals in a row would exit it).
REFUSALS = frozenset(
    {
        admission.UNKNOWN_TIER,
        admission.FORBIDDEN_TIER,
        admission.NOT_IN_TEAM,
        admission.QUOTA,
        admission.CAPACITY,
        admission.NO_MATCHING_GPU,
        admission.NO_QUEUE,
        "kueue",
        "invalid-options",
        "availability-unknown",
        "unschedulable",
    }
)


def refusal(message: str, *, reason: str, status: int) -> SpawnException:
    exc = SpawnException(message, reason=reason, status_code=status)
    exc.jupyterhub_message = message  # what the hub's pages show
    return exc


def refused(spawner, message: str, *, reason: str, status: int) -> SpawnException:
    """The refusal ``spawner`` raises, kept out of JupyterHub's consecutive-failure count."""
    not_a_failure(spawner)
    return refusal(message, reason=reason, status=status)
