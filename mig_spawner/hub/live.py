"""Live figures for an open spawn form: ``GET {base_url}services/mig/api/figures`` -> JSON.

Served by mig-spawner's hub-managed service (:mod:`.service`), not by the hub: the form
(``templates/mig-form.html``) polls it every 2 s instead of re-rendering the page. The
user is whoever JupyterHub's OAuth says (the service's login cookie, which the form obtains
by loading this URL once in a hidden frame -- a navigation, through the hub's OAuth
redirects -- or a token of theirs); the answer holds only
their tiers and the teams they are in. The figures come from the per-state-version cache
of :func:`mig_spawner.core.form.build_profile_list` over the service's own view, so a
request costs a lookup, not a decision, however large the cluster.

Without the service (``MIGSpawner.service_name = ""``), the form re-reads its own page
every 15 s instead.
"""

from __future__ import annotations

import json

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from ..core import messages
from ..core.form import build_profile_list
from ..core.form import live_figures as figures_of
from ..core.giveback import borrowers
from ..core.linedoc import waiting_counts
from ..core.profiles import TIER_KEY
from .formpage import render_tiers


class FiguresHandler(HubOAuthenticated, web.RequestHandler):
    """The asking user's own live form figures, from the cache.

    A GET changes nothing, and a cross-site page cannot read the answer (no CORS
    headers); an anonymous request is sent to the hub's login, a service's token is 403.
    """

    def check_xsrf_cookie(self):
        """The open form's ``fetch()`` carries no XSRF token (the page is the hub's, the
        token would be the service's): a GET here changes nothing, and a cross-site page
        cannot read the answer (no CORS headers), so a GET needs none."""
        if self.request.method not in ("GET", "HEAD"):
            super().check_xsrf_cookie()

    @web.authenticated
    async def get(self):
        user = self.current_user
        if user.get("kind", "user") != "user":
            raise web.HTTPError(403, "GPU availability is for users.")
        figures = await live_figures(
            self.settings["mig"], user["name"], tuple(user.get("groups") or ())
        )
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(figures))


async def live_figures(context, user: str, groups: tuple[str, ...]) -> dict:
    """What an open form refreshes, from the per-version cache of the service's view.

    ``tiers``: the figures per profile; ``borrowers``: the user's servers on a fallback
    slice (:mod:`~mig_spawner.core.giveback`); ``html``: the form as the page renders it,
    for the page to swap in its status lines and choices without reloading.
    """
    from kubespawner import KubeSpawner

    settings = context.settings
    view = context.view
    if settings.policy is None:
        raise web.HTTPError(404, "This hub's MIGSpawner has no tiers.")
    known = await view.wait_known(min(settings.sync_timeout, 3))
    profiles = build_profile_list(
        settings.policy,
        view.state,
        user=user,
        groups=groups,
        known=known,
        problem="" if known else messages.availability_unknown(),
        own=settings.own_profiles,
    )
    # KubeSpawner's own initialisation (slugs, default choices), as the spawner applies it.
    profiles = KubeSpawner._get_initialized_profile_list(None, profiles)
    figures = figures_of(profiles)
    # How many wait per tier (the hub's line, as saved in its ConfigMap): the user's tiers.
    line, _problem = await context.line()
    counts = waiting_counts(line) if line is not None else {}
    tier_of = {p["slug"]: p.get(TIER_KEY) or p["slug"] for p in profiles}
    for slug, shown in figures["tiers"].items():
        known_count = line is not None and shown["gpu"]
        shown["waiting"] = counts.get(tier_of.get(slug, slug), 0) if known_count else None
    # The user's servers on a fallback slice, and whether their own size is free now.
    borrowed = borrowers(settings.policy, view.state, user, groups) if known else []
    return {
        "known": known,
        **figures,
        "borrowers": [b.to_dict() for b in borrowed],
        "html": render_tiers(profiles, {}),
    }
