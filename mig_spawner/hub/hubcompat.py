"""The one place mig-spawner adapts to a JupyterHub version: refusals on JupyterHub 5.

JupyterHub 6 has :class:`jupyterhub.spawner.SpawnException`: a spawn that raises it is a
*policy failure*, logged without a traceback and never counted toward
``consecutive_failure_limit``. JupyterHub 5 (the Zero to JupyterHub 4.x hub image pins
5.5.0) has no such class and counts every failed spawn: Z2JH sets the limit to 5, so five
quota refusals in a row would exit the hub. Here, and only here:

- :data:`SpawnException` is JupyterHub's own where it exists, else an
  ``HTTPError`` with the same constructor (``message``, ``reason=``, ``status_code=``);
- :func:`not_a_failure` keeps a refusal out of JupyterHub 5's count. It is a no-op on
  JupyterHub 6. :data:`HUB_KNOWS_REFUSALS` says which of the two is running.

tests/hub/test_hubcompat.py runs on both pinned JupyterHubs (``.venv`` and
``.venv-z2jh``) and fails on either if the hub's counting changes under us.
"""

from __future__ import annotations

from tornado import web

try:  # JupyterHub >= 6
    from jupyterhub.spawner import SpawnException

    HUB_KNOWS_REFUSALS = True
except ImportError:  # JupyterHub 5
    HUB_KNOWS_REFUSALS = False

    class SpawnException(web.HTTPError):  # type: ignore[no-redef]
        def __init__(self, message, *, reason, status_code=400, **_):
            super().__init__(status_code, log_message=message, reason=None)
            self.message = message
            self.reason = reason


def not_a_failure(spawner) -> None:
    """Keep the refusal ``spawner`` is about to raise out of the consecutive-failure count.

    JupyterHub 5's done-callback of the spawn (``BaseHandler.spawn_single_user``) adds 1
    to ``settings['failure_count']`` once ``start()`` raises and exits the hub at
    ``spawner.consecutive_failure_limit``; taking 1 off first leaves the count as it was
    before the refusal. ``spawner.handler`` is the handler running the spawn (JupyterHub
    sets it before ``start()``); without one (a spawn started some other way) nothing is
    counted, so nothing is taken off.
    """
    if HUB_KNOWS_REFUSALS:
        return
    settings = getattr(getattr(spawner, "handler", None), "settings", None)
    if isinstance(settings, dict):
        settings["failure_count"] = settings.get("failure_count", 0) - 1
