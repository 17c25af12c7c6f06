"""The hub's GPU slice page, ``/hub/mig``: who holds which MIG slice, team quotas, refusals.

Registered with ``c.JupyterHub.extra_handlers = mig_spawner.hub.adminpage.handlers()``.
It runs *inside* the hub process on purpose: in-flight reservations (admitted spawns whose
pod is not bound yet) exist only in the hub's memory, and the page must show exactly the
ClusterState the spawners decide with. A separate JupyterHub service would need its own
watch, would not see reservations and could disagree with the spawn form. JupyterHub marks
``extra_handlers`` deprecated in favour of services but keeps it in 5.x and 6.x; the page
is one handler on JupyterHub's own ``BaseHandler`` (login, scopes, page style, xsrf).

Access: the ``admin-ui`` scope (admins have it), else 403. Hundreds of nodes are paged
(``?page=``, ``?per_page=``) and can be filtered by name or GPU model (``?q=``).
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader
from jupyterhub.handlers import BaseHandler
from tornado import web

from ..core import slicemap
from . import metrics

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
PAGE_TEMPLATE = "mig-admin.html"
LIVE_TEMPLATE = "mig-admin-live.html"  # the part that refreshes itself
DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 200


def handlers() -> list[tuple[str, type]]:
    """The ``(url, handler)`` pairs for ``c.JupyterHub.extra_handlers`` (served under /hub/)."""
    return [(r"/mig/?", MIGAdminHandler)]


@dataclass(frozen=True)
class Page:
    number: int
    count: int
    per_page: int
    total_nodes: int
    query: str


def _int_arg(handler: BaseHandler, name: str, default: int, lo: int, hi: int) -> int:
    raw = handler.get_argument(name, "")
    if not raw:
        return default
    if not raw.isdecimal():
        raise web.HTTPError(
            400, f"{name} must be a positive whole number, got {raw[:20]!r}", reason="Bad Request"
        )
    return max(lo, min(hi, int(raw)))


def _matches(state, name: str, query: str) -> bool:
    if not query:
        return True
    node = state.nodes[name]
    text = " ".join([name, *(k.gpu_name for k in node.offers), *(k.profile for k in node.offers)])
    return all(word in text.casefold() for word in query.casefold().split())


def page_data(view, policy, *, query: str = "", page: int = 1, per_page: int = 25) -> dict:
    """Everything the page shows, from one ClusterState (and this hub's recent decisions)."""
    state = view.state
    gpu_nodes = [n for n in sorted(state.nodes) if state.nodes[n].offers]
    wanted = [n for n in gpu_nodes if _matches(state, n, query)]
    count = max(1, math.ceil(len(wanted) / per_page))
    page = min(page, count)
    shown = wanted[(page - 1) * per_page : page * per_page]
    maps = slicemap.node_maps(state, shown)
    groups: dict[str, list[slicemap.NodeMap]] = defaultdict(list)
    for m in maps:
        groups[m.gpu_name].append(m)
    since = view.seconds_since_last_event()
    return {
        "healthy": view.known,
        "problem": view.problem,
        "since": {k: (None if v is None else round(v, 1)) for k, v in since.items()},
        "types": slicemap.by_type(slicemap.capacity(state)),
        "teams": slicemap.team_rows(policy, state),
        "fallbacks": slicemap.fallback_servers(state),
        "refusals": metrics.recent_refusals(20),
        "reservations": len(state.reservations),
        "groups": sorted(groups.items()),
        "page": Page(page, count, per_page, len(wanted), query),
        "node_count": len(gpu_nodes),
        "unusable": sum(1 for n in gpu_nodes if not state.nodes[n].usable),
        "now": time.time(),
    }


def _bar(used: float, limit: float | None) -> dict[str, Any]:
    if not limit:
        return {"pct": 0, "level": "none"}
    pct = min(100, round(100 * used / limit))
    return {"pct": pct, "level": "full" if used >= limit else "high" if pct >= 75 else "ok"}


def _ago(now: float, at: float) -> str:
    seconds = max(0, int(now - at))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


class MIGAdminHandler(BaseHandler):
    """GET /hub/mig: the slice map (``?fragment=1``: only the live part, for refreshes)."""

    def get_template(self, name, sync=False):
        key = "mig_spawner_jinja_env_sync" if sync else "mig_spawner_jinja_env"
        env = self.settings.get(key)
        if env is None:
            base = self.settings["jinja2_env_sync" if sync else "jinja2_env"]
            env = base.overlay(loader=ChoiceLoader([FileSystemLoader(TEMPLATES), base.loader]))
            self.settings[key] = env
        return env.get_template(name)

    @web.authenticated
    async def get(self):
        if "admin-ui" not in self.expanded_scopes:
            # reason: JupyterHub's error page heads with the reason, else with the message,
            # which it then repeats underneath.
            raise web.HTTPError(
                403, "The GPU slice page is for hub admins (scope admin-ui).", reason="Forbidden"
            )
        query = self.get_argument("q", "").strip()[:100]
        page = _int_arg(self, "page", 1, 1, 10**6)
        per_page = _int_arg(self, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
        current = await self._view_and_policy()
        if current is None:
            html = await self.render_template(
                PAGE_TEMPLATE,
                data=None,
                error=(
                    "This hub's spawner is not MIGSpawner (c.JupyterHub.spawner_class), "
                    "so there is no GPU slice state to show."
                ),
            )
            self.finish(html)
            return
        view, policy = current
        data = page_data(view, policy, query=query, page=page, per_page=per_page)
        fragment = self.get_argument("fragment", "") == "1"
        html = await self.render_template(
            LIVE_TEMPLATE if fragment else PAGE_TEMPLATE,
            data=data,
            error="",
            bar=_bar,
            ago=_ago,
            states=(
                slicemap.USED,
                slicemap.RESERVED,
                slicemap.OTHER,
                slicemap.FREE,
                slicemap.UNUSABLE,
            ),
        )
        self.finish(html)

    async def _view_and_policy(self):
        """The hub-wide view spawners use (started if no spawn has yet), and the policy.

        Reached through the admin's own (unstarted) spawner object, which JupyterHub builds
        from the hub's configuration: the same view key and settings as every spawn.
        """
        spawner = self.current_user.spawner
        if not hasattr(spawner, "cluster_view"):
            return None
        view = spawner.cluster_view()  # also points the metrics at this view and policy
        # A view just started needs its first list: wait briefly, as the spawn form does.
        await view.wait_known(min(spawner.cluster_sync_timeout, 3))
        return metrics.current()
