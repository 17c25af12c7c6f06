"""Reclaim in the hub: gather the signals, plan (:mod:`mig_spawner.core.reclaim`), act.

One :class:`Reclaimer` per cluster view (the hub's), started with the view when a tier
has ``reclaim`` rules. A *pass* runs every ``reclaim_interval`` seconds and soon after a
spawn joins the waiting line:

1. the signals: each running server's seconds since the hub's last activity (JupyterHub's
   ``last_activity``: kernels, terminals and connections, as the single-user server
   reports them, as the idle culler reads them), and, with ``prometheus_url`` set, its
   GPU's largest engine activity over the tier's ``idle_after`` (:mod:`.prometheus`);
2. :func:`mig_spawner.core.reclaim.plan` says whom to warn, whose warning to withdraw
   and whom to stop;
3. a warning is one log line and shows on its user's home page; a stop is one log line
   (``reclaim stop ... reason=idle detail="..."``), one ``reclaimed_total{reason}`` and a
   DELETE of the server through the hub's REST API (the path an admin's or the idle
   culler's stop takes: the proxy route goes, the spawner stops, the hub's database
   says so), with ``hub_api_token`` (a token with the ``delete:servers`` scope: the mig
   service's, set by :func:`mig_spawner.hub.service.service`). The user reads why at
   their next visit to the home page, until their next start.

``reclaim_dry_run``: the same passes and log lines ("would stop"), no warning shown, no
stop. A pass that fails (Prometheus down: "not known idle"; the API: logged) never stops
anything it was not sure of.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
import weakref
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Bool, Float, Set, TraitError, Unicode, validate
from traitlets.config import Configurable

from ..core import reclaim
from ..core.pods import unix_seconds
from ..core.policy import ConfigError
from . import prometheus
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)
#: notices of stopped servers kept per user (the newest)
MAX_NOTICES = 5
#: seconds a stop asked of the hub counts as under way (then, the pod still there, the
#: server is a candidate again and a later pass may stop it)
STOPPING_FOR = 300.0


class ReclaimSettings(Configurable):
    """MIGSpawner's reclaim settings (a mixin: ``c.MIGSpawner.<name>``)."""

    prometheus_url = Unicode(
        "",
        config=True,
        help="""
        A Prometheus that scrapes NVIDIA's DCGM exporter (e.g. ``http://prometheus:9090``):
        a server is then idle only if its GPU's engine activity
        (``DCGM_FI_PROF_GR_ENGINE_ACTIVE``, else ``DCGM_FI_DEV_GPU_UTIL``) stayed under
        ``gpu_idle_below`` over its tier's ``idle_after``. Unreachable or garbled: not known
        idle, never idle. Empty (the default): the hub's activity alone.
        """,
    )
    prometheus_pod_label = Unicode(
        "pod",
        config=True,
        help="""
        The label of the DCGM series that names the pod: ``pod``, or ``exported_pod`` when
        Prometheus scrapes the exporter without ``honor_labels`` (set
        ``prometheus_namespace_label`` to match).
        """,
    )
    prometheus_scrape_interval = Float(
        30.0,
        config=True,
        help="""
        Seconds between two scrapes of the DCGM exporter (its ServiceMonitor's
        ``interval``): a GPU reading is known only with half the window's scrapes or more.
        """,
    )
    prometheus_namespace_label = Unicode(
        "namespace",
        config=True,
        help="""
        The label of the DCGM series that names the pod's namespace: ``namespace``, or
        ``exported_namespace`` beside ``prometheus_pod_label = "exported_pod"``.
        """,
    )
    gpu_idle_below = Float(
        reclaim.DEFAULT_GPU_IDLE_BELOW,
        config=True,
        help="A GPU whose largest engine activity in the window is under this ratio is idle.",
    )
    reclaim_interval = Float(
        60.0,
        config=True,
        help="Seconds between reclaim passes (one also runs soon after a spawn joins the line).",
    )
    reclaim_dry_run = Bool(
        False,
        config=True,
        help='Log what reclaim would warn and stop ("would stop"), show and stop nothing.',
    )
    reclaim_exempt_users = Set(
        config=True, help="Users whose servers are never reclaimed (nor stopped by max_session)."
    )
    hub_api_token = Unicode(
        "",
        config=True,
        help="""
        A hub API token with the ``delete:servers`` scope: reclaim stops a server through the
        hub's REST API with it. :func:`mig_spawner.hub.service.service` sets it to the mig
        service's token; without one, a due stop is logged as an error and not done.
        """,
    )

    @validate("gpu_idle_below")
    def _ratio(self, proposal):
        value = proposal["value"]
        if not 0 < value <= 1:
            raise TraitError(
                f"MIGSpawner.gpu_idle_below is a ratio of engine activity (0.05 = 5 %),"
                f" above 0 and at most 1, not {value!r}"
            )
        return value

    @validate("reclaim_interval", "prometheus_scrape_interval")
    def _positive(self, proposal):
        value = proposal["value"]
        if not value > 0:
            name = proposal["trait"].name
            raise TraitError(f"MIGSpawner.{name} must be above 0 seconds, not {value!r}")
        return value


class Reclaimer:
    """The warnings, the stops in flight and the notices of one hub's reclaim."""

    def __init__(self, view, logger: Any = None):
        self.view = view
        self.log = logger or log
        self.warnings: dict[str, reclaim.Warned] = {}
        #: pod key -> (its uid, when its stop was asked): it still holds its slice
        self.stopping: dict[str, tuple[str, float]] = {}
        self.notices: dict[str, list[str]] = {}  # user -> why their servers were stopped
        self.candidates: dict[str, reclaim.Candidate] = {}  # the last pass's, by pod key
        self.spawners: weakref.WeakSet = weakref.WeakSet()  # the hub's MIG spawners
        self.passes = 0
        self._task: asyncio.Task | None = None
        self._soon = asyncio.Event()
        self._settings: Any = None  # a spawner: its settings (the same for all)

    # ------------------------------------------------------------ lifecycle

    def add(self, spawner) -> None:
        self.spawners.add(spawner)
        self._settings = spawner
        if self._task is None and _enabled(spawner):
            self._task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            await cancel_and_wait(task)

    def soon(self) -> None:
        """Run a pass soon (a spawn joined the line)."""
        self._soon.set()

    async def _loop(self) -> None:
        while True:
            spawner = self._settings
            self._soon.clear()
            try:
                await self.run_pass(spawner)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("mig-spawner: the reclaim pass failed")
            await asyncio.sleep(min(1.0, spawner.reclaim_interval))  # at most one a second
            try:
                await asyncio.wait_for(self._soon.wait(), spawner.reclaim_interval)
            except asyncio.TimeoutError:
                pass

    # ------------------------------------------------------------ reads

    def for_user(self, user: str, now: float | None = None) -> dict[str, Any]:
        """What ``user``'s home page shows: warnings in force, notices of stops, idleness."""
        now = time.time() if now is None else now
        dry = self._settings is not None and self._settings.reclaim_dry_run
        warnings = [] if dry else [w.to_dict(now) for w in self.warnings.values() if w.user == user]
        idle = {
            c.pod.server_name: c.shown
            for c in self.candidates.values()
            if c.pod.user == user and c.shown
        }
        return {"warnings": warnings, "notices": list(self.notices.get(user, ())), "idle": idle}

    def started(self, user: str) -> None:
        """``user`` starts a server: the notices of earlier stops have been read."""
        self.notices.pop(user, None)

    # ------------------------------------------------------------ the pass

    async def run_pass(self, spawner, now: float | None = None) -> reclaim.Plan | None:
        try:
            policy = spawner.policy
        except ConfigError:
            return None  # every start says why; nothing to reclaim by a broken policy
        if not self.view.known:
            return None
        self.passes += 1
        state = self.view.state
        gpu = await gpu_readings(spawner, policy, state)  # first: the rest is read after it
        now = time.time() if now is None else now
        for key, (uid, since) in list(self.stopping.items()):
            pod = state.pods.get(key)
            if pod is None or pod.uid != uid or now - since > STOPPING_FOR:
                del self.stopping[key]  # gone (its slice is free), replaced, or stuck
        activity = self._activity(now)
        line = self.view.waiting_line
        places = [p for p in line.line.order() if line.waiting(p.key)] if line else []
        plan = reclaim.plan(
            policy,
            state,
            places,
            activity=activity,
            gpu=gpu,
            warnings=self.warnings,
            now=now,
            exempt=spawner.reclaim_exempt_users,
            stopping=set(self.stopping),
            gpu_below=spawner.gpu_idle_below,
        )
        self.candidates = {c.key: c for c in plan.candidates}
        self.warnings = dict(plan.warnings)
        dry = " (dry run)" if spawner.reclaim_dry_run else ""
        for w in plan.warned:
            spawner.log.info(
                "reclaim warn%s user=%s server=%s tier=%s reason=%s stop_at=%s why=%s",
                dry,
                w.user,
                w.server_name or "-",
                w.tier,
                w.reason,
                reclaim.clock(w.deadline),
                json.dumps(w.why),
            )
        for w, why in plan.withdrawn:
            spawner.log.info(
                "reclaim withdraw%s user=%s server=%s reason=%s why=%s",
                dry,
                w.user,
                w.server_name or "-",
                w.reason,
                json.dumps(why),
            )
        for stop in plan.stops:
            await self._stop(spawner, stop, now)
        return plan

    def _activity(self, now: float) -> dict[str, float | None]:
        """Pod key -> seconds since the hub's last activity of its server."""
        out: dict[str, float | None] = {}
        for spawner in list(self.spawners):
            if spawner.pending:  # starting (or waiting in line): not idle, not reclaimable
                continue
            orm = getattr(spawner, "orm_spawner", None)
            last = getattr(orm, "last_activity", None) if orm is not None else None
            if isinstance(last, datetime.datetime):
                if last.tzinfo is None:  # JupyterHub's database keeps naive UTC
                    last = last.replace(tzinfo=datetime.timezone.utc)
                out[spawner.pod_key] = max(now - last.timestamp(), 0.0)
        return out

    async def _stop(self, spawner, stop: reclaim.Stop, now: float) -> None:
        w = stop.warned
        line = (
            f"user={w.user} server={w.server_name or '-'} tier={w.tier} reason={w.reason}"
            f" detail={json.dumps(stop.detail)}"
        )
        if spawner.reclaim_dry_run:
            spawner.log.info("reclaim would stop (dry run) %s", line)
            return
        if not spawner.hub_api_token:
            spawner.log.error(
                "reclaim cannot stop %s: MIGSpawner.hub_api_token is not set (a token with"
                " the delete:servers scope; mig_spawner.hub.service.service(c) sets it)",
                line,
            )
            self.warnings[w.key] = w  # due still: the next pass tries again
            return
        target = next((s for s in list(self.spawners) if s.pod_key == w.key), None)
        pod = self.view.state.pods.get(w.key)
        if (target is not None and target.pending) or pod is None or pod.uid != w.uid:
            spawner.log.info(
                'reclaim withdraw user=%s server=%s why="restarted"', w.user, w.server_name or "-"
            )
            return  # it stopped or started again since the warning: not the server warned
        self.stopping[w.key] = (w.uid, now)
        try:
            await _delete_server(spawner, w.user, w.server_name)
        except Exception as e:
            self.stopping.pop(w.key, None)
            self.warnings[w.key] = w  # due still: the next pass tries again
            spawner.log.error("reclaim could not stop %s: %s", line, e)
            return
        spawner.log.warning("reclaim stop %s", line)
        spawner.hub_metrics.reclaimed(w.reason)
        notices = self.notices.setdefault(w.user, [])
        notices.append(stop.notice(now))
        del notices[:-MAX_NOTICES]


async def gpu_readings(settings, policy, state) -> dict[str, Any] | None:
    """Pod key -> its GPU reading over its tier's idle window, for every GPU server of the
    hub (None: no ``prometheus_url``). ``settings``: the spawner, or the service's
    Settings (the same attribute names)."""
    if not settings.prometheus_url:
        return None
    windows: dict[float, list[str]] = {}  # each tier's window: its servers
    for pod in state.pods.values():
        tier = policy.tier(pod.tier) if pod.managed and pod.tier else None
        if tier is not None and pod.slot:
            windows.setdefault(reclaim.idle_window(tier), []).append(pod.key)
    out: dict[str, Any] = {}
    pod_label = settings.prometheus_pod_label
    for window, keys in windows.items():
        for namespace in sorted({k.split("/", 1)[0] for k in keys}):
            pods = [k.split("/", 1)[1] for k in keys if k.startswith(namespace + "/")]
            out.update(
                await prometheus.gpu_readings(
                    settings.prometheus_url,
                    namespace,
                    pods,
                    window_s=window,
                    scrape_interval_s=settings.prometheus_scrape_interval,
                    pod_label=pod_label,
                    namespace_label=settings.prometheus_namespace_label,
                )
            )
    return out


async def hub_activity(api_url: str, token: str, state, now: float) -> dict[str, float]:
    """Pod key -> seconds since the hub's last activity of its server, read as the idle
    culler reads it (``GET /users?state=active``; scopes ``list:users``,
    ``read:users:activity``, ``read:servers``): for the service, which has no spawners."""
    by_server: dict[tuple[str, str], float] = {}
    url: str | None = f"{api_url.rstrip('/')}/users?state=active&limit=200"
    while url:
        response = await AsyncHTTPClient().fetch(
            url,
            headers={
                "Authorization": f"token {token}",
                "Accept": "application/jupyterhub-pagination+json",
            },
            request_timeout=5,
        )
        page = json.loads(response.body)
        for user in page.get("items", []):
            for name, server in (user.get("servers") or {}).items():
                stamp = unix_seconds(server.get("last_activity"))
                if stamp is not None:
                    by_server[user["name"], name] = max(now - stamp, 0.0)
        after = (page.get("_pagination") or {}).get("next")
        url = (
            f"{api_url.rstrip('/')}/users?state=active&offset={after['offset']}&limit={after['limit']}"
            if after
            else None
        )
    return {
        pod.key: by_server[pod.user, pod.server_name]
        for pod in state.pods.values()
        if pod.managed and (pod.user, pod.server_name) in by_server
    }


async def _delete_server(spawner, user: str, server_name: str) -> None:
    """``DELETE /users/{user}/servers/{name}`` on the hub's REST API (as an admin would)."""
    base = spawner.hub.api_url.rstrip("/")
    path = f"/users/{quote(user, safe='')}/servers/{quote(server_name, safe='')}"
    if not server_name:
        path = f"/users/{quote(user, safe='')}/server"
    request = HTTPRequest(
        base + path,
        method="DELETE",
        headers={"Authorization": f"token {spawner.hub_api_token}"},
        request_timeout=30,
    )
    response = await AsyncHTTPClient().fetch(request, raise_error=False)
    if response.code not in (202, 204):
        body = (response.body or b"")[:200].decode("utf-8", "replace")
        raise RuntimeError(f"the hub answered {response.code}: {body}")


def _enabled(spawner) -> bool:
    try:
        policy = spawner.policy
    except ConfigError:
        return False
    return any(t.reclaim is not None for t in policy.tiers.values())


def reclaimer_of(spawner) -> Reclaimer:
    """The hub-wide reclaimer of ``spawner``'s cluster view, made on first use."""
    view = spawner.cluster_view()
    if view.reclaimer is None:
        view.reclaimer = Reclaimer(view, spawner.log)
    view.reclaimer.add(spawner)
    return view.reclaimer


def track(spawner, *, starting: bool) -> None:
    """``spawner`` runs (restored by ``load_state``) or starts: its activity counts from now
    on; a start also means its user has read why an earlier server was stopped."""
    if not spawner.tiers:
        return
    try:
        reclaimer = reclaimer_of(spawner)
    except RuntimeError:  # no running loop (a spawner built outside the hub)
        return
    except Exception:  # never fail a start or the hub's restore over it: say why
        spawner.log.warning("mig-spawner: reclaim cannot follow %s", spawner.pod_key, exc_info=True)
        return
    if starting:
        reclaimer.started(spawner.user.name)
