"""What the demo hub's config imports: its login and one quieted warning.

The demo's users share one password, admin included. JupyterHub's DummyAuthenticator
takes any password unless its ``password`` is set, which JupyterHub 5.3+ deprecates (a
warning at every start), and warns it is a testing authenticator; its replacement,
SharedPasswordAuthenticator, makes admins use a second password of 32 characters or more.
:class:`DemoAuthenticator` is the demo's own: one password for the demo's listed users.

The admins' slice page and the form's live figures are mig-spawner's hub-managed service,
which logs in users without JupyterHub's "Authorize access" page (``oauth_no_confirm``:
the spawn form logs in to it through a hidden frame). JupyterHub warns of that choice at
every start; :func:`quiet_no_confirm_warning` drops that one line from the demo hub's log,
as nothing a demo user does can change it (a production hub keeps it: its admin chose).
"""

from __future__ import annotations

import hmac
import logging

from jupyterhub.auth import Authenticator
from traitlets import Unicode

NO_CONFIRM_WARNING = "Allowing service mig to complete OAuth without confirmation"


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


def quiet_no_confirm_warning(logger_name: str = "JupyterHub") -> None:
    """Drop JupyterHub's warning that the mig service skips the OAuth confirmation page
    (only that line) from its log."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _DropOne) for f in logger.filters):
        logger.addFilter(_DropOne(NO_CONFIRM_WARNING))
