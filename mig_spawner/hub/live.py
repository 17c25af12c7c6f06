"""Live figures for an open spawn form: ``GET {hub}/api/mig/figures`` -> JSON.

The form polls this endpoint instead of re-rendering the page. It is served by the hub
with the user's own auth (their login cookie, or a token of theirs): an anonymous request
gets 403, and the answer holds only the user's tiers and the teams they are in. The
figures come from the per-state-version cache of :func:`mig_spawner.core.form
.build_profile_list`, so a request costs a lookup, not a decision, however large the
cluster.

The handler is added to the running hub's tornado application the first time a
MIGSpawner is used (:func:`install`): no setting is needed, and the hub's own routes are
untouched. If it is not installed (another process, an unusual hub), the form falls back
to reloading the page's figures every 15 s.
"""

from __future__ import annotations

import json
import logging

from jupyterhub.handlers.base import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import web

log = logging.getLogger("mig_spawner.hub.live")

#: under the hub's prefix (``/hub/``)
FIGURES_PATH = "api/mig/figures"


class FiguresHandler(BaseHandler):
    """The user's own live form figures, from the cache.

    A page handler, not an API one: JupyterHub checks an XSRF token on cookie-authed API
    GETs, which a polling page would have to carry; a GET here changes nothing, and a
    cross-site page cannot read the answer (no CORS headers).
    """

    async def get(self):
        current = self.current_user
        if current is None or getattr(current, "kind", None) != "user":
            raise web.HTTPError(403, "Log in to see GPU availability.")
        user = self.users[current.name]
        spawner = user.spawner  # figures do not depend on the server's name
        if not hasattr(spawner, "offered_profiles"):  # not a MIGSpawner
            raise web.HTTPError(404, "This hub does not use mig-spawner.")
        figures = await live_figures(spawner)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(figures))


async def live_figures(spawner) -> dict:
    """What an open form refreshes, from the per-version cache.

    ``tiers``: the figures per profile; ``html``: the form as the page renders it, for
    the page to swap in its status lines and choices without reloading.
    """
    from ..core.form import live_figures as figures_of
    from .formpage import render_form

    view = spawner.cluster_view()
    profiles = await spawner.offered_profiles(spawner.policy, live=True)
    return {"known": view.known, **figures_of(profiles), "html": await render_form(spawner)}


def figures_url(hub_prefix: str) -> str:
    return url_path_join(hub_prefix, FIGURES_PATH)


def install() -> str:
    """Add the figures route to the running hub, once. Its URL path, or "" if none."""
    try:
        from jupyterhub.app import JupyterHub

        if not JupyterHub.initialized():
            return ""
        hub = JupyterHub.instance()
        application = getattr(hub, "tornado_application", None)
    except Exception:  # not inside a hub process
        return ""
    if application is None:
        return ""
    pattern = figures_url(hub.hub_prefix)
    if getattr(application, "_mig_figures_installed", False):
        return pattern
    # First, ahead of the hub's catch-all 404 route.
    application.wildcard_router.rules.insert(0, web.URLSpec(pattern, FiguresHandler))
    application._mig_figures_installed = True
    log.info("Serving live spawn-form figures at %s", pattern)
    return pattern


def offer_figures_route(profiles: list[dict]) -> None:
    """Install the route if need be and tell each live profile where to poll."""
    url = install()
    for profile in profiles if url else ():
        profile["mig"]["live_url"] = url
