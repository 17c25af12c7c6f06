"""The admins' GPU slice page: who holds which MIG slice, team quotas, refusals.

Served by mig-spawner's hub-managed service (:mod:`.service`) at
``{base_url}services/mig/`` (it was ``/hub/mig`` through the deprecated
``extra_handlers``). It draws the service's own view of the cluster with the hub's
policy, through the same :mod:`mig_spawner.core.slicemap` the hub's metrics use: a spawn
is on it as soon as its pod exists (a created pod holds its pinned node's slice), only
the fraction of a second between the hub's decision and the pod's creation is not. The
refusal counts are the hub's own, read from ``/hub/metrics`` (the service's role has
``read:metrics``); who was refused and why is in the hub's log, one line per decision.

Access: the ``admin-ui`` scope (admins have it; the service's OAuth tokens carry it for
whoever has it), else 403. Hundreds of nodes are paged (``?page=``, ``?per_page=``) and
can be filtered by name or GPU model (``?q=``).
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyterhub.services.auth import HubOAuthenticated
from prometheus_client.parser import text_string_to_metric_families
from tornado import web
from tornado.escape import xhtml_escape
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ..core import linedoc, slicemap
from ..core.idle import duration
from .metrics import PREFIX, REFUSED

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
PAGE_TEMPLATE = "mig-admin.html"
LIVE_TEMPLATE = "mig-admin-live.html"  # the part that refreshes itself
DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 200


@dataclass(frozen=True)
class Page:
    number: int
    count: int
    per_page: int
    total_nodes: int
    query: str


def _int_arg(handler: web.RequestHandler, name: str, default: int, lo: int, hi: int) -> int:
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


@dataclass(frozen=True)
class Refusals:
    code: str
    tier: str
    count: int


def refusal_counts(metrics_text: str) -> list[Refusals]:
    """The hub's refusals by reason and tier, most first, from its ``/hub/metrics`` text."""
    rows = []
    for family in text_string_to_metric_families(metrics_text):
        if family.name != PREFIX + "decisions":
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_total") and labels.get("outcome") == REFUSED:
                rows.append(Refusals(labels["code"], labels["tier"], int(sample.value)))
    return sorted((r for r in rows if r.count), key=lambda r: (-r.count, r.code, r.tier))


async def hub_refusals(context) -> tuple[list[Refusals], str]:
    """(the refusal counts, "" or why there are none to show) from the hub's metrics."""
    if not context.api_url:
        return [], "The hub's metrics are not reachable from here."
    url = context.api_url.rstrip("/").removesuffix("/api") + "/metrics"
    try:
        response = await AsyncHTTPClient().fetch(
            url, headers={"Authorization": f"token {context.api_token}"}, request_timeout=5
        )
    except HTTPClientError as e:
        return [], f"The hub's metrics answered {e.code} (the service needs read:metrics)."
    except OSError as e:
        return [], f"The hub's metrics are not reachable: {e}"
    return refusal_counts(response.body.decode("utf-8", "replace")), ""


def page_data(
    view,
    policy,
    *,
    query: str = "",
    page: int = 1,
    per_page: int = 25,
    refusals=(),
    line=None,
    idle=None,
) -> dict:
    """Everything the page shows, from one ClusterState (and the hub's refusal counts and
    waiting line: ``line``, the :class:`~mig_spawner.core.linedoc.LineDoc` the hub saved;
    ``idle``: pod key -> :class:`~mig_spawner.core.reclaim.Candidate`)."""
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
        "refusals": list(refusals),
        "reservations": len(state.reservations),
        "groups": sorted(groups.items()),
        "page": Page(page, count, per_page, len(wanted), query),
        "node_count": len(gpu_nodes),
        "unusable": sum(1 for n in gpu_nodes if not state.nodes[n].usable),
        "now": time.time(),
        "line": [] if line is None else line_rows(line, policy, time.time()),
        "servers": server_rows(idle or {}),
        "gpu_signal": any(c.idleness.gpu is not None for c in (idle or {}).values()),
    }


def server_rows(idle: dict[str, Any]) -> list[dict[str, Any]]:
    """Each GPU server with its idleness, the longest idle first."""
    rows = []
    for c in idle.values():
        rules = c.tier.reclaim
        if rules is None or rules.idle_after is None:
            reclaim = "never" if rules is None else "no (max_session only)"
        elif c.exempt:
            reclaim = "exempt"
        else:
            reclaim = f"after {duration(rules.idle_after)} idle, for a waiting spawn"
        rows.append(
            {
                "user": c.pod.user,
                "server": c.pod.server_name,
                "tier": c.tier.display_name,
                "profile": c.pod.profile,
                "node": c.pod.slot,
                "shown": c.shown,
                "idle": c.idleness.idle,
                "reclaim": reclaim,
                "since": c.idleness.hub_idle_s,
            }
        )
    rows.sort(key=lambda r: (-(r["since"] or 0), r["user"] or "", r["server"]))
    return rows


def line_rows(line, policy, now: float) -> list[dict[str, Any]]:
    """The waiting line per tier (policy order, display names), each place by position."""
    rows = []
    for row in linedoc.summary(line, list(policy.tiers)):
        tier = policy.tier(row.tier)
        rows.append(
            {
                "tier": row.tier,
                "name": tier.display_name if tier else f"{row.tier} (no longer a tier)",
                "waiting": row.waiting,
                "eta": linedoc.eta_text(row.head_eta),
                "places": [
                    {
                        "position": p.position,
                        "user": p.user,
                        "server": p.server_name,
                        "team": p.team,
                        "waited": _minutes(now - p.requested_at),
                        "eta": linedoc.eta_text(p.eta_seconds),
                    }
                    for p in row.places
                ],
            }
        )
    return rows


def _minutes(seconds: float) -> str:
    return f"{max(0, round(seconds / 60))} min"


def _bar(used: float, limit: float | None) -> dict[str, Any]:
    if not limit:
        return {"pct": 0, "level": "none"}
    pct = min(100, round(100 * used / limit))
    return {"pct": pct, "level": "full" if used >= limit else "high" if pct >= 75 else "ok"}


_env: list[Environment] = []


def _templates() -> Environment:
    if not _env:
        _env.append(Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape()))
    return _env[0]


class AdminPageHandler(HubOAuthenticated, web.RequestHandler):
    """GET /: the slice map (``?fragment=1``: only the live part, for refreshes)."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The status as the heading and the reason once underneath (tornado's default page
        shows neither the reason nor anything a user could act on)."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else ""
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(
            f"<!DOCTYPE html><html><head><title>{status_code} : {xhtml_escape(self._reason)}"
            f"</title></head><body><h1>{status_code} : {xhtml_escape(self._reason)}</h1>"
            f"<p>{xhtml_escape(message)}</p></body></html>"
        )

    @web.authenticated
    async def get(self):
        user = self.current_user
        if "admin-ui" not in (user.get("scopes") or ()):
            # reason: an error page heads with the reason, else with the message, which it
            # then repeats underneath.
            raise web.HTTPError(
                403, "The GPU slice page is for hub admins (scope admin-ui).", reason="Forbidden"
            )
        context = self.settings["mig"]
        query = self.get_argument("q", "").strip()[:100]
        page = _int_arg(self, "page", 1, 1, 10**6)
        per_page = _int_arg(self, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
        fragment = self.get_argument("fragment", "") == "1"
        names = {
            "hub_prefix": context.hub_prefix,
            "prefix": self.request.path,
            "user": user.get("name", ""),
        }
        policy = context.settings.policy
        if policy is None:
            error = "This hub's MIGSpawner has no tiers, so there is no GPU slice state to show."
            html = _templates().get_template(PAGE_TEMPLATE).render(data=None, error=error, **names)
            self.finish(html)
            return
        view = context.view
        # A view just started needs its first list: wait briefly, as the spawn form does.
        await view.wait_known(min(context.settings.sync_timeout, 3))
        refusals, problem = await hub_refusals(context)
        line, line_problem = await context.line()
        idle, idle_problem = await context.idleness()
        data = page_data(
            view,
            policy,
            query=query,
            page=page,
            per_page=per_page,
            refusals=refusals,
            line=line,
            idle=idle,
        )
        data["refusals_problem"] = problem
        data["line_problem"] = line_problem
        data["idle_problem"] = idle_problem
        html = (
            _templates()
            .get_template(LIVE_TEMPLATE if fragment else PAGE_TEMPLATE)
            .render(
                data=data,
                error="",
                bar=_bar,
                states=(
                    slicemap.USED,
                    slicemap.RESERVED,
                    slicemap.OTHER,
                    slicemap.FREE,
                    slicemap.UNUSABLE,
                ),
                **names,
            )
        )
        self.finish(html)
