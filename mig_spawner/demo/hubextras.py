"""What the demo hub's config imports: its login and one quieted warning.

The demo's users share one password, admin included. JupyterHub's DummyAuthenticator
takes any password unless its ``password`` is set, which JupyterHub 5.3+ deprecates (a
warning at every start), and warns it is a testing authenticator; its replacement,
SharedPasswordAuthenticator, makes admins use a second password of 32 characters or more.
:class:`DemoAuthenticator` is the demo's own: one password for the demo's listed users.

The admins' slice page is an ``extra_handlers`` handler (see docs/howto/monitoring.md for
why), which JupyterHub logs as deprecated at every start; :func:`quiet_extra_handlers`
drops that one line from the demo hub's log, as nothing a demo user does can change it.
"""

from __future__ import annotations

import hmac
import logging

from jupyterhub.auth import Authenticator
from traitlets import Unicode

EXTRA_HANDLERS_WARNING = "JupyterHub.extra_handlers is deprecated"


class DemoAuthenticator(Authenticator):
    """Every allowed user logs in with ``password``; admins are ``admin_users``."""

    password = Unicode("", config=True, help="The one password of every demo user.")

    async def authenticate(self, handler, data):
        given = str(data.get("password") or "")
        if self.password and hmac.compare_digest(given.encode(), self.password.encode()):
            return data.get("username")
        return None


class _DropOne(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


def quiet_extra_handlers(logger_name: str = "JupyterHub") -> None:
    """Drop JupyterHub's extra_handlers deprecation line (only that one) from its log."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _DropOne) for f in logger.filters):
        logger.addFilter(_DropOne(EXTRA_HANDLERS_WARNING))
