"""mig-spawner's hub-managed service: the admins' GPU slice page and an open form's figures.

JupyterHub 5.5 and 6 have one supported way to add HTTP endpoints to a hub: a *service*
(``c.JupyterHub.extra_handlers`` logs "deprecated in JupyterHub 3.1. Please use
JupyterHub services"; writing into the hub's tornado routes is no API at all). So
mig-spawner's pages are a service JupyterHub starts, proxies and logs users in to:

- ``{base_url}services/mig/``: the slice map, team bars and refusal counts, for holders
  of the ``admin-ui`` scope (:mod:`.adminpage`);
- ``{base_url}services/mig/api/figures``: the asking user's live form figures
  (:mod:`.live`), polled by an open spawn form.

The service is its own process, so it asks for what it needs through declared channels
only: the hub's spawner settings, passed in its environment by :func:`service` (the same
policy and API server as the spawners); its own list+watch of nodes and pods
(:class:`~mig_spawner.hub.watch.ClusterView`, RBAC as the hub's); the user, their groups
and scopes from JupyterHub's OAuth (:class:`~jupyterhub.services.auth.HubOAuth`); the
hub's decision counters from ``/hub/metrics`` with its token (role: ``read:metrics``).

It also is the hub's start-up check: a malformed policy makes it log one line and exit 1
before it answers, and JupyterHub, which waits for a managed service to come up, exits
too. Configure it with :func:`service` and :func:`roles` (``jupyterhub_config.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPServerConnectionDelegate
from traitlets.config import Config

from ..core.pods import Trust
from ..core.policy import ConfigError, Policy
from . import lifetime
from .config import policy_from_config, setting

NAME = "mig"
PORT = 10101
log = logging.getLogger("mig_spawner.hub.service")

#: The hub's spawner settings, as JSON, in the service's environment (:func:`service`)
SETTINGS_ENV = "MIG_SPAWNER_HUB_SETTINGS"
#: Environment the service must not inherit from the hub (JupyterHub sets its own
#: JUPYTERHUB_*; the proxy token and cookie secret are the hub's alone).
_NOT_FORWARDED = ("JUPYTERHUB_", "JPY_", "CONFIGPROXY_")


def service(
    config,
    *,
    name: str = NAME,
    url: str = f"http://127.0.0.1:{PORT}",
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ``c.JupyterHub.services`` entry that runs mig-spawner's service.

    ``config``: the hub's config (``c``), read now: call this after the ``MIGSpawner`` and
    ``KubeSpawner`` settings (last in ``jupyterhub_config.py``; Zero to JupyterHub runs
    ``hub.extraConfig`` after ``hub.config``). Their plain values reach the service in its
    environment (a callable ``profile_list`` does not: the figures then show the tiers
    alone). ``url``: where the proxy reaches it (Zero to JupyterHub: ``http://hub:10101``).
    The hub's environment is passed on too (JupyterHub gives a service only PATH and a
    few others; in-cluster credentials need ``KUBERNETES_SERVICE_*``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_FORWARDED)}
    env[SETTINGS_ENV] = json.dumps(_snapshot(config))
    env[lifetime.HUB_PID_ENV] = str(os.getpid())  # JupyterHub runs this config in its own process
    # The service's token (role: roles()) is also the one the hub's reclaim stops idle
    # servers with, through the REST API (hub/reclaim.py): one token, one role, set here.
    if isinstance(config, Config):  # its item access makes a Config section, as c.X does
        section = config.MIGSpawner
    else:  # a plain dict of sections (tests, tools)
        section = config.setdefault("MIGSpawner", {})
    token = setting(section, "hub_api_token", "") or secrets.token_hex(32)
    section["hub_api_token"] = token
    return {
        "name": name,
        "url": url,
        "api_token": token,
        "command": [sys.executable, "-m", "mig_spawner.hub.service"],
        "environment": {**env, **(environment or {})},
        "display": True,  # listed in the hub's Services menu
        "oauth_no_confirm": True,
        # The page is for admins: the OAuth token says whether the user has admin-ui.
        "oauth_client_allowed_scopes": ["admin-ui"],
    }


def _snapshot(config) -> dict[str, dict[str, Any]]:
    """The spawner sections of a config, as JSON-able plain data (others left out)."""
    out: dict[str, dict[str, Any]] = {}
    for section_name in ("Spawner", "KubeSpawner", "MIGSpawner"):
        section = config.get(section_name) if section_name in config else None
        for key in list(section or ()):
            value = setting(section, key, None)
            try:
                out.setdefault(section_name, {})[key] = json.loads(json.dumps(value))
            except (TypeError, ValueError):
                continue  # a callable, an object: the service goes without
    return out


def roles(name: str = NAME) -> list[dict[str, Any]]:
    """``c.JupyterHub.load_roles`` entries: every user may use the service (their figures;
    the page itself checks ``admin-ui``); the service may read the hub's metrics, and its
    token (the hub's ``MIGSpawner.hub_api_token``) may stop servers for reclaim."""
    return [
        {"name": "user", "scopes": ["self", f"access:services!service={name}"]},
        # read:metrics: the admin page's counts; delete:servers: reclaim's stops;
        {
            "name": f"{name}-service",
            "services": [name],
            "scopes": [
                "read:metrics",
                "delete:servers",
                # the admins' page shows each GPU server's idleness, as the idle culler reads it
                "list:users",
                "read:users:activity",
                "read:servers",
            ],
        },
    ]


# --------------------------------------------------------------------------- settings


def _trait(config, name: str, default: Any) -> Any:
    """A spawner setting as the hub's MIGSpawner sees it (MIGSpawner over KubeSpawner)."""
    for section in ("MIGSpawner", "KubeSpawner", "Spawner"):
        value = setting(config.get(section) if section in config else None, name, None)
        if value is not None:
            return value
    return default


def _namespace_default() -> str:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    return "default"


@dataclass
class Settings:
    """What the service reads from the hub's configuration."""

    policy: Policy | None
    own_profiles: list = field(default_factory=list)
    host: str = ""
    ssl_ca_cert: str = ""
    verify_ssl: bool | None = None
    trust: Trust = field(default_factory=Trust)
    namespace: str = "default"  # the hub's (where its waiting line's ConfigMap is)
    sync_timeout: float = 10.0
    watch_timeout: int = 300
    max_backoff: float = 30.0
    request_timeout: int = 3
    #: the GPU signal of the servers' idleness (hub/reclaim.py's settings, same names)
    prometheus_url: str = ""
    prometheus_pod_label: str = "pod"
    prometheus_namespace_label: str = "namespace"
    reclaim_exempt_users: frozenset = frozenset()
    prometheus_scrape_interval: float = 30.0
    gpu_idle_below: float = 0.05

    @classmethod
    def from_config(cls, config) -> Settings:
        """Raises ConfigError for a malformed policy."""
        policy = policy_from_config(config)
        own = _trait(config, "profile_list", [])
        if isinstance(own, dict):
            own = [own[k] for k in sorted(own)]
        user_namespaces = _trait(config, "enable_user_namespaces", False)
        # the hub's own namespace (hub/linestore.hub_namespace decides it the same way)
        namespace = ("" if user_namespaces else _trait(config, "namespace", "")) or (
            _namespace_default()
        )
        quota_namespaces = _trait(config, "quota_namespaces", [])
        if quota_namespaces:
            namespaces: frozenset[str] | None = frozenset(quota_namespaces)
        elif user_namespaces:
            namespaces = None
        else:
            namespaces = frozenset({namespace})
        return cls(
            policy=policy,
            own_profiles=list(own) if isinstance(own, list) else [],  # a callable: none
            host=_trait(config, "k8s_api_host", ""),
            ssl_ca_cert=_trait(config, "k8s_api_ssl_ca_cert", ""),
            verify_ssl=_trait(config, "k8s_api_verify_ssl", None),
            trust=Trust(namespaces=namespaces, hub=_trait(config, "hub_id", "jupyterhub")),
            namespace=namespace,
            sync_timeout=float(_trait(config, "cluster_sync_timeout", 10.0)),
            watch_timeout=int(_trait(config, "cluster_watch_timeout", 300)),
            max_backoff=float(_trait(config, "cluster_retry_max_backoff", 30.0)),
            request_timeout=int(_trait(config, "k8s_api_request_timeout", 3)),
            prometheus_url=_trait(config, "prometheus_url", ""),
            prometheus_pod_label=_trait(config, "prometheus_pod_label", "pod"),
            prometheus_namespace_label=_trait(config, "prometheus_namespace_label", "namespace"),
            reclaim_exempt_users=frozenset(_trait(config, "reclaim_exempt_users", ())),
            prometheus_scrape_interval=float(_trait(config, "prometheus_scrape_interval", 30.0)),
            gpu_idle_below=float(_trait(config, "gpu_idle_below", 0.05)),
        )


# --------------------------------------------------------------------------- the service


#: Seconds a read of the waiting line's ConfigMap is reused (the forms poll every 2 s).
LINE_MAX_AGE = 2.0
#: Seconds the servers' idleness (the hub's activity, Prometheus) is reused
IDLE_MAX_AGE = 10.0


class LineCache:
    """One read of the line in flight at a time, its answer reused for ``max_age`` s."""

    def __init__(self, max_age: float = LINE_MAX_AGE):
        self.value: tuple[Any, str] | None = None
        self.read_at = -float("inf")
        self.reads = 0
        self.max_age = max_age
        self._lock = asyncio.Lock()

    async def get(self, read) -> tuple[Any, str]:
        async with self._lock:
            if self.value is None or time.monotonic() - self.read_at > self.max_age:
                self.reads += 1
                self.value = await read()
                self.read_at = time.monotonic()
            return self.value


@dataclass
class Context:
    """What the handlers share: the settings, the service's cluster view, the hub's URLs."""

    settings: Settings
    view: Any  # ClusterView
    base_url: str = "/"  # the hub's JUPYTERHUB_BASE_URL
    api_url: str = ""  # JUPYTERHUB_API_URL
    api_token: str = ""
    core_api: Any = None  # the service's CoreV1Api (reads the waiting line's ConfigMap)
    line_cache: LineCache = field(default_factory=lambda: LineCache())
    idle_cache: LineCache = field(default_factory=lambda: LineCache(IDLE_MAX_AGE))

    async def line(self) -> tuple[Any, str]:
        """(the hub's saved waiting line, "") or (None, why not): the ConfigMap, read at
        most every :data:`LINE_MAX_AGE` s however many pages and forms ask."""
        if self.core_api is None:
            return None, "The waiting line is not readable from here."
        from .linestore import read_line

        settings = self.settings
        return await self.line_cache.get(
            lambda: read_line(
                self.core_api,
                namespace=settings.namespace,
                hub_id=settings.trust.hub or "jupyterhub",
                timeout=settings.request_timeout,
            )
        )

    async def idleness(self) -> tuple[dict[str, Any], str]:
        """(pod key -> :class:`~mig_spawner.core.reclaim.Candidate`, "") or ({}, why not):
        each GPU server's idleness as the hub's reclaim reads it, at most every
        :data:`IDLE_MAX_AGE` s."""
        settings = self.settings
        if settings.policy is None or not self.api_url:
            return {}, "The hub's activity is not readable from here."

        async def read() -> tuple[dict[str, Any], str]:
            from ..core import reclaim
            from .reclaim import gpu_readings, hub_activity

            state, now = self.view.state, time.time()
            try:
                gpu = await gpu_readings(settings, settings.policy, state)
                activity = await hub_activity(self.api_url, self.api_token, state, now)
            except Exception as e:  # the page shows why, never breaks
                return {}, f"The hub's activity is not readable: {e}"
            plan = reclaim.plan(
                settings.policy,
                state,
                [],
                activity=activity,
                gpu=gpu,
                warnings={},
                now=now,
                exempt=settings.reclaim_exempt_users,
                gpu_below=settings.gpu_idle_below,
            )
            return {c.key: c for c in plan.candidates}, ""

        return await self.idle_cache.get(read)

    @property
    def hub_prefix(self) -> str:
        return self.base_url.rstrip("/") + "/hub/"


def make_app(context: Context, prefix: str):
    """The service's tornado application, every route under ``prefix``."""
    from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler

    from .adminpage import AdminPageHandler
    from .live import FiguresHandler

    prefix = prefix.rstrip("/") + "/"
    return web.Application(
        [
            (prefix, AdminPageHandler),
            (prefix + "api/figures", FiguresHandler),
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
            (prefix.rstrip("/"), web.RedirectHandler, {"url": prefix}),
        ],
        hub_auth=HubOAuth(api_token=context.api_token, cache_max_age=60),
        cookie_secret=secrets.token_bytes(32),
        mig=context,
    )


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Watch the cluster and answer HTTP at ``$JUPYTERHUB_SERVICE_URL`` until ``stop``.

    It listens first, answering 503 while it imports the rest and starts its watch:
    JupyterHub 5.5 gives a managed service 10 s to answer before it exits.
    """
    env = os.environ
    url = urlparse(env.get("JUPYTERHUB_SERVICE_URL", f"http://127.0.0.1:{PORT}"))
    switch = _Switch(web.Application([(r".*", _Starting)], log_function=_quiet))
    server = HTTPServer(switch)
    server.listen(url.port or 80, address=_bind_address(url.hostname or ""))

    from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
    from kubespawner.clients import load_config

    from .watch import ClusterView

    await asyncio.to_thread(
        load_config, settings.host or None, settings.ssl_ca_cert or None, settings.verify_ssl
    )
    client = ApiClient(configuration=Configuration.get_default_copy())
    view = ClusterView(
        CoreV1Api(client),
        trust=settings.trust,
        close=client.close,
        request_timeout=settings.request_timeout,
        watch_timeout=settings.watch_timeout,
        max_backoff=settings.max_backoff,
        logger=log,
    )
    view.start()
    context = Context(
        settings,
        view,
        base_url=env.get("JUPYTERHUB_BASE_URL", "/"),
        api_url=env.get("JUPYTERHUB_API_URL", ""),
        api_token=env.get("JUPYTERHUB_API_TOKEN", ""),
        core_api=CoreV1Api(client),
    )
    switch.app = make_app(context, env.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{NAME}/"))
    log.info("mig-spawner service listening for %s", url.geturl())
    if stop is None:
        # JupyterHub stops a managed service with SIGINT, then SIGTERM after 10 s: either
        # ends it at once (else the hub's own stop outlasts the pod's grace period).
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        orphaned = asyncio.ensure_future(lifetime.stop_when_orphaned(stop, lifetime.hub_pid(), log))
    else:
        orphaned = None
    try:
        await stop.wait()
    finally:
        if orphaned is not None:
            orphaned.cancel()
        server.stop()
        try:
            await asyncio.wait_for(view.stop(), timeout=5)
        except asyncio.TimeoutError:
            log.warning("mig-spawner service: the cluster watch did not stop within 5 s")


class _Switch(HTTPServerConnectionDelegate):
    """The HTTP server's one delegate: the starting app, then the service's."""

    def __init__(self, app):
        self.app = app

    def start_request(self, server_conn, request_conn):
        return self.app.start_request(server_conn, request_conn)

    def on_close(self, server_conn):
        self.app.on_close(server_conn)


def _quiet(handler) -> None:
    """The starting app's 503s are expected (JupyterHub polls until one answers)."""


class _Starting(web.RequestHandler):
    """While the service starts: 202 at its own URL, which JupyterHub polls until any
    answer below 500 (a 5xx it logs as a warning each time); 503 everywhere else."""

    def prepare(self):
        env = os.environ
        roots = {
            urlparse(env.get("JUPYTERHUB_SERVICE_URL", "")).path or "/",
            env.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{NAME}/"),
        }
        roots |= {r.rstrip("/") for r in roots}
        self.set_status(202 if self.request.path in roots else 503)
        self.set_header("Retry-After", "1")
        self.finish("mig-spawner's service is starting")


def _bind_address(host: str) -> str:
    """The URL's address if it is one of this machine's; all interfaces for a DNS name
    (Z2JH: ``hub``, the Service in front of the hub pod)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return ""
    return host


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m mig_spawner.hub.service",
        description="mig-spawner's hub-managed service; JupyterHub runs it (service()).",
    ).parse_args(argv)
    logging.basicConfig(format="[%(levelname).1s %(asctime)s mig-spawner] %(message)s")
    for name in ("mig_spawner", "tornado.application"):
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        settings = Settings.from_config(json.loads(os.environ.get(SETTINGS_ENV, "{}")))
    except ConfigError as e:
        log.critical("mig-spawner: invalid configuration, the hub will not start: %s", e)
        return 1
    except ValueError as e:  # not JSON: not started by service()
        log.critical("mig-spawner: %s is not the JSON service() writes: %s", SETTINGS_ENV, e)
        return 1
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
