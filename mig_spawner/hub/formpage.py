"""The spawn form page: the admin's profiles and the tiers, rendered with live figures."""

from __future__ import annotations

import os
import time
from html import escape

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader
from jupyterhub.utils import url_path_join

from ..core import messages
from ..core.linedoc import restart_notice
from ..core.policy import ConfigError
from .homepage import give_back_notices

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
#: under mig-spawner's service prefix (:mod:`.live`)
FIGURES_PATH = "api/figures"


def figures_url(hub_base_url: str, service_name: str) -> str:
    """Where an open form polls: ``{base_url}services/<name>/api/figures`` ("" if none)."""
    if not service_name:
        return ""
    base = hub_base_url.rstrip("/").removesuffix("/hub") + "/"
    return url_path_join(base, "services", service_name, FIGURES_PATH)


async def render_form(spawner) -> str:
    """The spawn form: the admin's profiles and the tiers, with live figures.

    An admin's own form template (``profile_form_template``, or a ``form.html`` in
    ``additional_profile_form_template_paths``, e.g. jupyterhub-fancy-profiles) gets the
    combined list through KubeSpawner's own renderer; otherwise ours renders it. Ours
    gets ``user_options`` itself, so it works with KubeSpawner 7.0 too.
    """
    try:
        profiles = await spawner.offered_profiles(spawner.policy, live=True)
    except ConfigError as e:
        spawner.log.error("mig-spawner is misconfigured: %s", e)
        return (
            "<p class='alert alert-danger'>GPU spawning is misconfigured on this hub; "
            "please tell your hub admin.</p>"
        )
    admin_template = spawner.profile_form_template or any(
        os.path.isfile(os.path.join(p, "form.html"))
        for p in spawner.additional_profile_form_template_paths
    )
    notice = kept_notice(spawner)
    give_back = [
        n["line"] for n in give_back_notices(spawner.user) if n["server_name"] != spawner.name
    ]
    if admin_template:
        html = spawner._render_options_form(profiles)
        for line in give_back:
            html = f'<p class="alert alert-info mig-give-back">{escape(line)}</p>{html}'
        if notice:
            html = f'<p id="mig-restart-notice" class="alert alert-info">{escape(notice)}</p>{html}'
        return html
    live_url = figures_url(spawner.hub.base_url, spawner.service_name)
    return render_tiers(
        profiles,
        spawner.user_options or {},
        live_url=live_url,
        notice=notice,
        give_back=give_back,
    )


def kept_notice(spawner) -> str:
    """ "the hub restarted: your place (#2) is kept for 10 min - press Start" when the hub's
    line (``spawner.waiting_line()``) keeps a place for this server, else ""."""
    waiting_line = getattr(spawner, "waiting_line", None)
    if waiting_line is None:  # a hub without the waiting line
        return ""
    kept = getattr(waiting_line(), "kept", None) or {}
    return restart_notice(kept, f"{spawner.namespace}/{spawner.pod_name}", time.time())


def render_tiers(
    profiles: list[dict],
    user_options: dict,
    *,
    live_url: str = "",
    notice: str = "",
    give_back: list[str] | tuple[str, ...] = (),
) -> str:
    """mig-spawner's own form for an initialised profile list (the spawner's, or the
    service's figures, :mod:`.live`): ``live_url`` is where the open form polls."""
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(TEMPLATES), PackageLoader("kubespawner")]),
        autoescape=True,
    )
    startable = [p for p in profiles if not p["mig"]["disabled"]]
    return env.get_template("mig-form.html").render(
        profile_list=profiles,
        user_options=user_options,
        live_url=live_url,
        nothing_can_start=messages.nothing_can_start() if not startable else "",
        restart_notice=notice,
        give_back=give_back,
    )
