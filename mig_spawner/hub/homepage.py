"""The hub's home page, with a borrower's notice: "a 1g.10gb slice is free: restart ...".

A server that fell back to a larger slice is a borrower (:mod:`mig_spawner.core.giveback`).
When a slice of its tier's own size is free, its user sees so on the hub's home page, with
one button that restarts that server with the options it was started with (stop, then
start, through the hub's REST API as the user: nothing restarts without the click).

Installed through the two extension points JupyterHub has for pages:
``JupyterHub.template_paths`` (our ``home.html``, which extends the hub's own) and
``JupyterHub.template_vars`` (a callable the hub calls with the user for each page)::

    from mig_spawner.hub.homepage import install_home_page
    install_home_page(c)

The figures come from the hub's own cluster view (the one the spawners decide on): a page
load costs one pass over the user's pods, no API call. A misconfigured policy or a view
not yet synced shows no notice; it never breaks the page.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from ..core.giveback import Borrower, borrowers

#: our page templates (``home.html``), searched before the hub's own
HOME_TEMPLATES = os.path.join(os.path.dirname(__file__), "templates", "hub")
#: the template variables the home page reads
TEMPLATE_VAR = "mig_give_back"
RECLAIM_VAR = "mig_reclaim"

log = logging.getLogger(__name__)


def install_home_page(config) -> None:
    """Put our ``home.html`` first on ``config.JupyterHub.template_paths`` and the notices'
    callable in ``template_vars``, keeping what the admin set there."""
    hub = config.JupyterHub
    paths = list(hub.template_paths) if "template_paths" in hub else []
    if HOME_TEMPLATES not in paths:
        hub.template_paths = [HOME_TEMPLATES, *paths]
    template_vars = dict(hub.template_vars) if "template_vars" in hub else {}
    template_vars[TEMPLATE_VAR] = give_back_notices
    template_vars[RECLAIM_VAR] = reclaim_notices
    hub.template_vars = template_vars


def give_back_notices(user: Any) -> list[dict[str, Any]]:
    """For the home page: ``user``'s borrowers whose own size is free, each with the
    options its restart posts. [] for anyone else, and whenever it cannot tell."""
    spawners = [s for s in _spawners(user) if hasattr(s, "cluster_view")]
    if not spawners:
        return []
    first = spawners[0]
    try:
        view = first.cluster_view()
        if not view.known:
            return []
        found = borrowers(first.policy, view.state, user.name, first._groups())
    except Exception:  # the page must render: say why in the log, show no notice
        first.log.warning("mig-spawner: no give-back notice for %s", user.name, exc_info=True)
        return []
    by_name = {s.name: s for s in spawners}
    return [_notice(b, by_name.get(b.server_name)) for b in found if b.can_give_back]


def _spawners(user: Any) -> list[Any]:
    spawners = getattr(user, "spawners", None)
    return list(spawners.values()) if isinstance(spawners, dict) else []


def _notice(borrower: Borrower, spawner: Any) -> dict[str, Any]:
    claim = getattr(spawner, "claim", None)
    options = claim.asked_options() if claim is not None else {"tier": borrower.tier}
    return {
        **borrower.to_dict(),
        "button": f"Restart on a {borrower.wants} slice",
        "options": json.dumps(options, sort_keys=True, default=str),
    }


def reclaim_notices(user: Any) -> dict[str, Any]:
    """For the home page: the reclaim warnings on ``user``'s servers ("will be stopped in
    10 min unless you use it"), why an earlier server was stopped, and each running
    server's idleness ("idle 3 h, GPU 0 %"; hub/reclaim.py). Empty when it cannot tell."""
    spawners = [s for s in _spawners(user) if hasattr(s, "cluster_view")]
    empty: dict[str, Any] = {"warnings": [], "notices": [], "idle": {}}
    if not spawners:
        return empty
    try:
        reclaimer = spawners[0].cluster_view().reclaimer
        return reclaimer.for_user(user.name) if reclaimer is not None else empty
    except Exception:  # the page must render
        spawners[0].log.warning("mig-spawner: no reclaim notice for %s", user.name, exc_info=True)
        return empty
