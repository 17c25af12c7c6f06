"""Refusals: the hub saying no on purpose, and JupyterHub not counting them as failures."""

from __future__ import annotations

from tornado import web

from ..core import admission

try:  # JupyterHub >= 6: a SpawnException is a "failure", never counted as an error
    from jupyterhub.spawner import SpawnException

    _HUB_KNOWS_REFUSALS = True
except ImportError:  # JupyterHub 5 (the Z2JH 4.x hub image): every failed spawn counts
    _HUB_KNOWS_REFUSALS = False

    class SpawnException(web.HTTPError):  # type: ignore[no-redef]
        def __init__(self, message, *, reason, status_code=400, **_):
            super().__init__(status_code, log_message=message, reason=None)
            self.message = message
            self.reason = reason


STATUS = {
    admission.UNKNOWN_TIER: 400,
    admission.FORBIDDEN_TIER: 403,
    admission.NOT_IN_TEAM: 403,
    admission.QUOTA: 403,
    admission.CAPACITY: 503,
    admission.NO_MATCHING_GPU: 503,
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
        "invalid-options",
        "availability-unknown",
        "unschedulable",
    }
)


def refusal(message: str, *, reason: str, status: int) -> SpawnException:
    exc = SpawnException(message, reason=reason, status_code=status)
    exc.jupyterhub_message = message  # what the hub's pages show
    return exc


def not_a_failure(spawner) -> None:
    """Keep a refusal out of JupyterHub's consecutive-failure count.

    JupyterHub 6 does not count a ``SpawnException``. JupyterHub 5 counts every failed
    spawn: its done-callback adds 1 to ``settings['failure_count']`` after ``start()``
    raises, and exits the hub at the limit. Taking 1 off first leaves the count as it
    was before this refusal (the handler that runs the spawn is ``spawner.handler``).
    """
    if _HUB_KNOWS_REFUSALS:
        return
    settings = getattr(getattr(spawner, "handler", None), "settings", None)
    if isinstance(settings, dict):
        settings["failure_count"] = settings.get("failure_count", 0) - 1
