"""MIGSpawner: KubeSpawner that hands out MIG slices by tier, with fallback and team quotas.

A thin shell. The decision comes from :mod:`mig_spawner.core.admission`; the cluster state
from the hub-wide :class:`~mig_spawner.hub.watch.ClusterView`; the form from KubeSpawner's
own ``profile_list`` machinery fed by :mod:`mig_spawner.core.form`. What this class adds is
the wiring: traitlets, the spawn-time decision and reservation, the pod's GPU request,
labels and annotations, progress messages and releasing reservations.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from kubernetes_asyncio.client import Configuration
from kubespawner import KubeSpawner
from kubespawner.clients import shared_client
from tornado import web
from traitlets import CaselessStrEnum, Dict, Float, Integer, default

from ..core import admission
from ..core.form import build_profile_list, tier_profiles
from ..core.options import OptionsError, parse_options
from ..core.pods import (
    CHARGE_MEMORY_LABEL,
    CHARGE_SLICES_LABEL,
    PROFILE_LABEL,
    TEAM_LABEL,
    TIER_LABEL,
    USER_LABEL,
    label_value,
)
from ..core.policy import POLICY_SETTINGS, ConfigError, Policy, policy_from_settings
from . import metrics
from .watch import ClusterView

try:  # JupyterHub >= 6: no traceback logged, the message goes to the user
    from jupyterhub.spawner import SpawnException
except ImportError:  # JupyterHub 5

    class SpawnException(web.HTTPError):  # type: ignore[no-redef]
        def __init__(self, message, *, reason, status_code=400, **_):
            super().__init__(status_code, log_message=message, reason=None)
            self.message = message
            self.reason = reason


TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
ANNOTATION_PREFIX = "mig-spawner/"
_STATUS = {
    admission.UNKNOWN_TIER: 400,
    admission.FORBIDDEN_TIER: 403,
    admission.NOT_IN_TEAM: 403,
    admission.QUOTA: 403,
    admission.CAPACITY: 503,
    admission.NO_MATCHING_GPU: 503,
}


def _refusal(message: str, *, reason: str, status: int) -> SpawnException:
    exc = SpawnException(message, reason=reason, status_code=status)
    exc.jupyterhub_message = message  # what the hub's pages show
    return exc


class MIGSpawner(KubeSpawner):
    """Spawn single-user servers on NVIDIA MIG slices chosen by tier.

    Users choose a *tier*; mig-spawner maps it to a MIG resource present in the cluster,
    falls back to a larger compatible slice when that type is full, and enforces
    per-team quotas (teams are JupyterHub groups). Every KubeSpawner setting still works;
    ``profile_list`` is generated from ``tiers`` unless you set it yourself.
    """

    tiers = Dict(
        config=True,
        help="""
        The tiers users choose from, as ``{slug: settings}``.

        The form lists them by ``order``, or, when no tier sets one, in the order of the
        mapping. Set ``order`` on every tier in Helm values: Helm sorts map keys, so the
        order you write a values file in does not reach the hub.

        Settings of each tier (all optional but ``display_name``):

        - ``display_name`` (str): what users see, e.g. "1g notebook".
        - ``order`` (int): the tier's place in the form, lowest first. Set it on every
          tier or on none; no two tiers may share one.
        - ``description`` (str): one line under the name.
        - ``compute_slices`` (int, 1-7, default 1): the minimum MIG compute slices ("g").
        - ``min_memory_gb`` (number, default 0): the minimum GPU memory, in the GB of
          NVIDIA's profile names (1g.10gb counts as 10).
        - ``max_compute_slices`` (int, default 7, or ``compute_slices`` when
          ``fallback`` is false): the largest slice a fallback may reach.
        - ``fallback`` (bool, default true): when the smallest adequate slice type is
          full, start on the next larger one instead of refusing.
        - ``max_fallback_steps`` (int, default unlimited): how many sizes up it may go.
        - ``groups`` (list of JupyterHub groups, default everyone): who sees the tier.
        - ``default`` (bool): preselected in the form (at most one tier).
        - ``node_selector`` (dict) and ``tolerations`` (list): restrict the tier to
          some nodes, e.g. a dedicated pool; applied to the pod too.
        - ``kubespawner_override`` (dict): other KubeSpawner settings for this tier
          (image, cpu_limit, ...). It may not set the GPU request or placement.

        A tier resolves against the GPUs present: "1g, >= 10 GB" is 1g.10gb on an H100,
        1g.18gb on an H200. Whole non-MIG GPUs count as 7g. Check a configuration with
        ``mig-spawner explain``.
        """,
    )
    fallback_chains = Dict(
        config=True,
        help="""
        Per tier, the MIG profiles to try, in order, instead of the default order
        (smallest adequate first). ``{"notebook": ["1g.10gb", "1g.20gb", "2g.20gb"]}``.
        Only listed profiles are used, and only those meeting the tier's minimums and
        ceiling. Use ``"whole-gpu"`` for a non-MIG GPU.
        """,
    )
    team_quotas = Dict(
        config=True,
        help="""
        GPU quotas per team, as ``{group: limits}``; a team is a JupyterHub group. Limits
        (each optional): ``compute_slices`` (sum of "g" over the team's servers),
        ``memory_gb``, ``servers``, ``per_user_compute_slices``. Usage is counted from
        the pods' labels, so it survives hub restarts. A user in several teams picks one
        in the form; by default the first team with room, by ``order`` (int, lowest
        first; set it on every team or on none) or, when no team sets one, in the order
        of the mapping. Set ``order`` in Helm values: Helm sorts map keys, so without it
        teams come alphabetically. A team set to ``None`` (a Helm ``null``) is removed:
        its members get ``default_quota``.
        """,
    )
    default_quota = Dict(
        config=True,
        help="""
        Limits for a user in none of the ``team_quotas`` groups, counted per user.
        Same keys as a team quota. Empty (the default) means no limit.
        """,
    )
    charge = CaselessStrEnum(
        ["granted", "requested"],
        default_value="granted",
        config=True,
        help="""
        How a fallback is charged to the quota: ``"granted"`` (the size actually given)
        or ``"requested"`` (the size the tier asked for).
        """,
    )
    cluster_sync_timeout = Float(
        10.0,
        config=True,
        help="""
        Seconds a spawn waits for the hub's first view of nodes and pods. If the
        Kubernetes API cannot be read by then, the spawn is refused with "GPU
        availability is unknown" rather than guessed.
        """,
    )
    cluster_watch_timeout = Integer(
        300,
        config=True,
        help="Seconds each Node/Pod watch request lasts before it is renewed.",
    )

    cluster_retry_max_backoff = Float(
        30.0,
        config=True,
        help="""
        Longest wait, in seconds, between retries when listing or watching nodes and
        pods fails. Retries start at 0.4 s and double. The hub never exits over it.
        """,
    )

    _views: dict[tuple, ClusterView] = {}

    # ---------------------------------------------------------------- config

    @property
    def policy(self) -> Policy:
        """The validated policy; rebuilt only when a setting changes."""
        settings = {name: getattr(self, name) for name in POLICY_SETTINGS}
        key = repr(settings)
        cached = getattr(self, "_mig_policy", None)
        if cached is None or cached[0] != key:
            self._mig_policy = (key, policy_from_settings(settings))
        return self._mig_policy[1]

    @default("profile_list")
    def _default_profile_list(self):
        return _profile_list

    @default("apply_user_options")
    def _default_apply_user_options(self):
        # JupyterHub's generic hook would warn about 'tier'/'team': load_user_options
        # below validates and applies them.
        return _options_handled_in_load_user_options

    @default("additional_profile_form_template_paths")
    def _default_template_paths(self):
        return [TEMPLATES]

    # ---------------------------------------------------------------- cluster view

    def cluster_view(self) -> ClusterView:
        """The hub-wide view for this API server, started on first use."""
        key = _view_key()
        views = MIGSpawner._views
        for stale in [k for k in views if k[0].is_closed()]:
            del views[stale]
        view = views.get(key)
        if view is None:
            view = ClusterView(
                shared_client("CoreV1Api"),
                request_timeout=self.k8s_api_request_timeout,
                watch_timeout=self.cluster_watch_timeout,
                max_backoff=self.cluster_retry_max_backoff,
            )
            view.start()
            views[key] = view
        try:
            policy = self.policy
        except ConfigError:
            policy = None  # logged where spawns use it
        metrics.set_current(view, policy)
        return view

    @classmethod
    async def stop_cluster_views(cls) -> None:
        """Stop every watch (hub shutdown, tests)."""
        views, cls._views = dict(cls._views), {}
        metrics.clear_current()
        for view in views.values():
            await view.stop()

    def _groups(self) -> tuple[str, ...]:
        return tuple(sorted(g.name for g in self.user.groups))

    # ---------------------------------------------------------------- spawn

    @property
    def _mig_pod_key(self) -> str:
        return f"{self.namespace}/{self.pod_name}"

    async def load_user_options(self):
        """Validate the request, apply the tier, then decide and reserve -- before any pod."""
        try:
            policy = self.policy
        except ConfigError as e:
            self.log.error("mig-spawner is misconfigured: %s", e)
            raise _refusal(
                "GPU spawning is misconfigured on this hub; please tell your hub admin.",
                reason="config",
                status=500,
            ) from None
        groups = self._groups()
        try:
            options = parse_options(self.user_options, policy, groups)
        except OptionsError as e:
            raise _refusal(str(e), reason="invalid-options", status=e.status) from None
        self.user_options = options.as_user_options()
        # KubeSpawner applies the tier's kubespawner_override via profile_list; it needs
        # only the static profiles, not the form's live figures (decided below, once).
        self._mig_static_profiles = True
        try:
            await super().load_user_options()
        finally:
            self._mig_static_profiles = False

        view = self.cluster_view()
        if not await view.wait_known(self.cluster_sync_timeout):
            self.log.warning("Refusing spawn: cluster state unknown (%s)", view.problem)
            raise _refusal(
                "GPU availability is unknown right now (the hub cannot read the cluster); "
                "please try again in a minute.",
                reason="availability-unknown",
                status=503,
            )
        request = admission.SpawnRequest(
            user=label_value(self.user.name),
            tier=options.tier,
            groups=groups,
            team=options.team,
            server_name=self.name,
        )
        started = time.perf_counter()
        decision = admission.admit(request, policy, view.state, pod_key=self._mig_pod_key)
        elapsed = time.perf_counter() - started
        self._mig_decision = decision
        metrics.record_decision(
            decision, user=self.user.name, server=self.name, seconds=elapsed, logger=self.log
        )
        if not decision.admitted:
            raise _refusal(decision.message, reason=decision.code, status=_STATUS[decision.code])
        self._apply_decision(decision)

    def _apply_decision(self, decision: admission.Decision) -> None:
        granted = decision.granted
        self.extra_resource_limits = {**self.extra_resource_limits, granted.resource: "1"}
        self.extra_resource_guarantees = {**self.extra_resource_guarantees, granted.resource: "1"}
        self.node_selector = {**self.node_selector, **decision.node_selector}
        tolerations = list(self.tolerations)
        tolerations += [dict(t) for t in decision.tolerations if dict(t) not in tolerations]
        self.tolerations = tolerations
        charge = decision.charge
        self.extra_labels = {
            **self.extra_labels,
            TEAM_LABEL: label_value(decision.team or ""),
            USER_LABEL: label_value(self.user.name),
            TIER_LABEL: label_value(decision.tier),
            PROFILE_LABEL: label_value(granted.profile),
            CHARGE_SLICES_LABEL: str(charge.compute_slices),
            CHARGE_MEMORY_LABEL: f"{charge.memory_gb:g}",
        }
        chain = ",".join(f"{c.slice_type.profile}:{c.outcome}" for c in decision.candidates)
        # Braces would be taken for KubeSpawner template fields: keep them out.
        self.extra_annotations = {
            **self.extra_annotations,
            ANNOTATION_PREFIX + "requested-profile": decision.requested.profile,
            ANNOTATION_PREFIX + "granted-profile": granted.profile,
            ANNOTATION_PREFIX + "granted-gpu": granted.gpu_name,
            ANNOTATION_PREFIX + "chain": chain,
            ANNOTATION_PREFIX + "charge": decision.charge_mode,
            ANNOTATION_PREFIX + "team": (decision.team or "").replace("{", "(").replace("}", ")"),
            ANNOTATION_PREFIX + "message": decision.message.replace("{", "(").replace("}", ")"),
        }

    async def _start(self):
        try:
            return await super()._start()
        except BaseException:
            self._release("start failed")
            raise

    async def stop(self, now=False):
        self._release("stopped")
        return await super().stop(now=now)

    def _release(self, why: str) -> None:
        view = self._current_view()
        if view is not None and view.state.release(self._mig_pod_key):
            self.log.info("Released the reservation of %s (%s)", self._log_name, why)

    def _current_view(self) -> ClusterView | None:
        try:
            return MIGSpawner._views.get(_view_key())
        except RuntimeError:  # no running loop: no view can exist
            return None

    async def progress(self):
        """Our decision first; on a fallback, every later line keeps saying so."""
        decision = getattr(self, "_mig_decision", None)
        note = ""
        if decision is not None and decision.admitted:
            yield {"progress": 2, "message": decision.message}
            if decision.fallback:
                note = (
                    f" ({decision.requested.profile} was full: running on {decision.granted.label})"
                )
        async for event in super().progress():
            if note and event.get("message"):
                event = {**event, "message": event["message"] + note}
            yield event


def _view_key() -> tuple:
    """One view per event loop and API server (tests run several hubs in one process)."""
    return (asyncio.get_running_loop(), Configuration.get_default_copy().host)


def _options_handled_in_load_user_options(spawner, user_options):
    return None


async def _profile_list(spawner: MIGSpawner) -> list[dict[str, Any]]:
    """KubeSpawner calls this for the form (live figures) and in load_user_options (static)."""
    try:
        policy = spawner.policy
    except ConfigError as e:
        spawner.log.error("mig-spawner is misconfigured: %s", e)
        return []
    if getattr(spawner, "_mig_static_profiles", False):
        return tier_profiles(policy, spawner._groups())
    view = spawner.cluster_view()
    known = await view.wait_known(min(spawner.cluster_sync_timeout, 3))
    return build_profile_list(
        policy,
        view.state,
        user=label_value(spawner.user.name),
        groups=spawner._groups(),
        known=known,
        problem=(
            "GPU availability is unknown right now: the hub cannot read the cluster."
            if not known
            else ""
        ),
    )
