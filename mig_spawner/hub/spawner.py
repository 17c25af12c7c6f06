"""MIGSpawner: KubeSpawner that hands out MIG slices by tier, with fallback and team quotas.

A thin shell: the decision comes from :mod:`mig_spawner.core.admission`, the cluster state from
the hub-wide :class:`~mig_spawner.hub.watch.ClusterView`, the form from KubeSpawner's
``profile_list`` fed by :mod:`mig_spawner.core.form`. This class wires traitlets, decision,
reservation, GPU request (or DRA claim: hub/dra.py; Kueue's labels: hub/kueue.py), progress.
"""

from __future__ import annotations

import time
from typing import Any

from jupyterhub.utils import maybe_future
from kubernetes_asyncio.client import ApiClient, CoreV1Api
from kubespawner import KubeSpawner
from traitlets import CaselessStrEnum, Dict, Float, Integer, List, Unicode, default

from ..core import messages
from ..core.claim import MOVES, RECORD_KEY, REFUSED, Claim, grant_record
from ..core.form import build_profile_list, tier_profiles
from ..core.options import OptionsError, parse_options
from ..core.pods import Trust
from ..core.policy import POLICY_SETTINGS, ConfigError, Policy, policy_from_settings
from . import demand, dra, kueue, linestore, metrics, reclaim, waiting, waitstart
from .formpage import render_form
from .hubcompat import SpawnException
from .placing import PlacementMixin
from .reclaim import ReclaimSettings
from .refusals import refusal, refused
from .startstop import StartStopMixin
from .watch import ClusterView, gc_freeze_trait, view_key

#: the key under which get_state saves the claim
CLAIM_KEY = "mig_claim"


class MIGSpawner(
    kueue.KueueMixin, PlacementMixin, StartStopMixin, ReclaimSettings, dra.DraSettings, KubeSpawner
):
    """Spawn single-user servers on NVIDIA MIG slices chosen by tier.

    Users choose a *tier*; mig-spawner maps it to a MIG resource present in the cluster,
    falls back to a larger compatible slice when that type is full, and enforces
    per-team quotas (teams are JupyterHub groups). Every KubeSpawner setting still works.
    With no ``tiers`` it is KubeSpawner, unchanged. With tiers, the admin's own
    ``profile_list`` (CPU profiles, image choices, ...) is kept and the tiers are added
    after it; a profile or choice may ask for a tier with ``"mig_tier"``.
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
        - ``max_wait`` (seconds, default 0): when every slice the tier could use is taken
          (the quota allows it), wait in line up to this long instead of being refused;
          0 refuses at once. Off by default: waiting spawns count toward JupyterHub's
          ``concurrent_spawn_limit``, so raise that first (see ``max_wait_cap``).
        - ``reclaim`` (dict, default off): ``{"idle_after": s, "grace": s (600),
          "max_session": s}``: after a warning, stop an idle server of the tier for a
          spawn waiting in line, or one older than ``max_session`` (see ``reclaim_*``).

        A tier resolves against the GPUs present: "1g, >= 10 GB" is 1g.10gb on an H100,
        1g.18gb on an H200. Whole non-MIG GPUs count as 7g. Check a configuration with
        ``mig-spawner explain``.

        Tiers and your own ``profile_list`` combine: your profiles come first, unchanged
        (CPU-only profiles get no GPU and charge no GPU quota); a profile, or one choice
        of its ``profile_options``, that sets ``"mig_tier": "<slug>"`` needs that tier's
        GPU, with its fallback and quota; every tier no profile asks for is listed
        after yours as a profile of its own. ``profile_list = []`` (Z2JH's default
        ``singleuser.profileList``) means "none of my own". Example, CPU and image
        choices beside GPU tiers::

            c.KubeSpawner.profile_list = [
                {"display_name": "CPU only", "slug": "cpu",
                 "kubespawner_override": {"cpu_limit": 2, "mem_limit": "4G"}},
                {"display_name": "GPU notebook", "slug": "gpu", "mig_tier": "notebook",
                 "profile_options": {"image": {"display_name": "Image", "choices": {
                     "pytorch": {"display_name": "PyTorch",
                                 "kubespawner_override": {"image": "pytorch:2"}},
                     "r": {"display_name": "R",
                           "kubespawner_override": {"image": "r-notebook:4"}}},
                     "unlisted_choice": {"enabled": True, "display_name": "Other image",
                                         "kubespawner_override": {"image": "{value}"}}}}},
            ]
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
        allow_none=True,  # a Helm values null: absent
        help="""
        Limits for a user in none of the ``team_quotas`` groups, counted per user. Same keys
        as a team quota. Empty (the default) or ``None`` (a Helm ``null``): no limit.""",
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

    gc_freeze_after_list = gc_freeze_trait()

    hub_id = Unicode(
        "jupyterhub",
        config=True,
        help="""
        The mark this hub puts on every pod it creates (annotation ``mig-spawner/hub``).
        Only pods with this mark, in ``quota_namespaces``, count toward quotas; every
        other pod still counts against the slices of its node. Give two hubs that
        share a namespace different values.
        """,
    )
    quota_namespaces = List(
        Unicode(),
        config=True,
        help="""
        Namespaces whose pods (with this hub's mark) count toward quotas. Default: the
        spawner's ``namespace``; with ``enable_user_namespaces``, any namespace (the mark
        still required).
        """,
    )
    unschedulable_retries = Integer(
        2,
        config=True,
        help="""
        How many times a spawn whose pod cannot be scheduled on its reserved node (a
        ``FailedScheduling`` event, or the node is cordoned, NotReady or deleted before
        the pod binds) is decided again on another node. When no other node has room,
        or after this many tries, the spawn fails at once with the reason instead of
        waiting for ``start_timeout``.
        """,
    )
    demand_log_file = demand.log_file_trait()
    line_restart_grace = linestore.restart_grace_trait()
    max_wait_cap = waiting.max_wait_cap_trait()

    service_name = Unicode(
        "mig",
        config=True,
        help="""The name of mig-spawner's service in ``c.JupyterHub.services``: an open spawn
        form polls its figures. Empty: no service (the form re-reads itself every 15 s).""",
    )

    _views: dict[tuple, ClusterView] = {}

    # ---------------------------------------------------------------- config

    @property
    def policy(self) -> Policy:
        """The validated policy; rebuilt only when a setting changes (core.policy keeps it)."""
        settings = {name: getattr(self, name) for name in POLICY_SETTINGS}
        return metrics.note_policy(policy_from_settings(settings))  # the collector reads it

    @default("options_form")
    def _mig_options_form_default(self):
        if not self.tiers:  # no tiers: KubeSpawner, unchanged
            return super()._options_form_default()
        return render_form

    @default("apply_user_options")
    def _mig_apply_user_options_default(self):
        # With tiers, load_user_options validates and applies every option; JupyterHub's
        # generic hook would only warn that 'tier'/'team' are unhandled.
        return _handled_in_load_user_options if self.tiers else None

    async def offered_profiles(self, policy: Policy, live: bool = False) -> list[dict[str, Any]]:
        """The admin's own profiles and the tiers, initialised as KubeSpawner does.

        ``live``: with the form's figures (one decision per GPU profile); else static.
        Raises ConfigError for a profile_list that does not fit the tiers.
        """
        own = self.profile_list
        if callable(own):
            own = await maybe_future(own(self))
        own = self._sorted_dict_values(own or [])
        groups = self._groups()
        if not live:
            profiles = tier_profiles(policy, groups, own)
        else:
            view = self.cluster_view()
            known = await view.wait_known(min(self.cluster_sync_timeout, 3))
            profiles = build_profile_list(
                policy,
                view.state,
                user=self.user.name,
                groups=groups,
                known=known,
                problem="" if known else messages.availability_unknown(),
                own=own,
                waiting=self.waiting_line().lengths(),
            )
        return self._get_initialized_profile_list(profiles)

    # ---------------------------------------------------------------- cluster view

    def cluster_view(self) -> ClusterView:
        """The hub-wide view for this API server, started on first use."""
        configuration = self._api_configuration()
        key = view_key(configuration.host)
        views = MIGSpawner._views
        for stale in [k for k in views if k[0].is_closed()]:
            del views[stale]
        view = views.get(key)
        if view is None:
            # Its own client: KubeSpawner's shared_client is per event loop, not per server.
            client = ApiClient(configuration=configuration)
            view = ClusterView(
                CoreV1Api(client),
                trust=self._trust(),
                close=client.close,
                request_timeout=self.k8s_api_request_timeout,
                watch_timeout=self.cluster_watch_timeout,
                max_backoff=self.cluster_retry_max_backoff,
                logger=self.log,
                freeze_gc=self.gc_freeze_after_list,
                dra=dra.cache_factory(self, client),
            )
            view.start()
            kueue.start_feeds(self, view, client)  # Kueue mode: its queues and workloads too
            views[key] = view
        return view

    def waiting_line(self) -> waiting.WaitingLine:
        """The hub-wide waiting line of this spawner's cluster view (hub/waiting.py)."""
        return waiting.line_of(self)

    @classmethod
    async def stop_cluster_views(cls) -> None:
        """Stop every watch (hub shutdown, tests)."""
        views, cls._views = dict(cls._views), {}
        for view in views.values():
            await view.stop()

    def _trust(self) -> Trust:
        if self.quota_namespaces:
            namespaces: frozenset[str] | None = frozenset(self.quota_namespaces)
        elif self.enable_user_namespaces:
            namespaces = None
        else:
            namespaces = frozenset({self.namespace})
        return Trust(namespaces=namespaces, hub=self.hub_id)

    def _groups(self) -> tuple[str, ...]:
        return tuple(sorted(g.name for g in self.user.groups))

    # ---------------------------------------------------------------- spawn

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: this spawn's :class:`~mig_spawner.core.claim.Claim`: made when a start begins,
        #: moved by its transitions, saved in the state; None before the first start
        self.claim: Claim | None = None
        #: the admin's settings a start changes, recorded by the first start (placing.py)
        self.admin_config: dict[str, Any] = {}
        #: this start's nodes its pod could not be placed on, and what the user was told
        self.avoid_nodes: set[str] = set()
        self.placement_notes: list[str] = []
        #: the hub's series (/hub/metrics): the first spawner JupyterHub constructs
        #: registers them, once (importing this module registers nothing)
        self.hub_metrics = metrics.register(lambda: metrics.source(MIGSpawner))

    @property
    def pod_key(self) -> str:
        return f"{self.namespace}/{self.pod_name}"

    async def run_pre_spawn_hook(self):
        """The admin's own ``pre_spawn_hook`` (it may refuse, or change the request), then
        decide, waiting in line while the tier is full, before ``start_timeout`` starts."""
        result = await maybe_future(super().run_pre_spawn_hook())
        if self.tiers:
            reclaim.track(self, starting=True)
            await waitstart.decide_first(self)
        return result

    async def load_user_options(self):
        """Validate the request, apply the profile, then decide and reserve -- before any pod
        (a start decided in the waiting line keeps that decision: hub/waiting.py)."""
        if not self.tiers:  # no tiers: KubeSpawner, unchanged
            return await super().load_user_options()
        claim = early = waitstart.admitted_early(self)
        if early is None:
            previous = self.claim
            self._release("a new start")  # an earlier start's claim, if it is still held
            now = time.time()
            if previous is not None and self.avoid_nodes and previous.requested_at is not None:
                now = previous.requested_at  # a start retried elsewhere: the same demand
            claim = Claim.request_for(
                self.pod_key, self.user.name, self.name, self.user_options, now=now
            )
            self.claim = claim
        try:
            policy = self.policy
            profiles = await self.offered_profiles(policy)
        except ConfigError as e:
            self.log.error("mig-spawner is misconfigured: %s", e)
            raise self._refused(
                "GPU spawning is misconfigured on this hub; please tell your hub admin.",
                reason="config",
                status=500,
                counted=True,
            ) from None
        self._restore_admin_config(policy, profiles)
        try:
            options = parse_options(claim.request, profiles, tuple(policy.tiers))
        except OptionsError as e:
            raise self._refused(str(e), reason="invalid-options", status=e.status) from None
        if options.profile is not None:
            # KubeSpawner's own validation and override layering (profile, then choices)
            # read the choices from user_options: lend it the request in its shape.
            self.user_options = options.as_user_options()
            try:
                self._validate_user_options(profiles)
                self._load_profile(options.profile, profiles)
            except (ValueError, KeyError) as e:
                raise self._refused(str(e), reason="invalid-options", status=400) from None
            finally:
                self.user_options = dict(claim.request)  # what the user asked, unchanged
        if options.tier is None:
            self.log.info("Starting %s on CPU profile %s", self._log_name, options.profile)
            self.claim = claim.decide(grant_record(options.profile), now=time.time())
        else:
            decision = early.decision if early else await waitstart.admit_now(self, policy, options)
            if early is None:
                tier_name = policy.tiers[decision.tier].display_name
                record = grant_record(options.profile, decision, tier_name)
                self.claim = claim.decide(record, decision, now=time.time()).reserve()
            self._apply_decision(decision, self.cluster_view())
        self.environment = {**self.environment, **self.claim.environment()}

    def _refused(
        self, message: str, *, reason: str, status: int, counted: bool = False
    ) -> SpawnException:
        """A refusal to raise; the claim ends refused. ``counted``: a hub fault, which
        JupyterHub's failure counter may count (config); a refusal of the user is not
        (:mod:`.hubcompat` keeps it out of the count)."""
        claim = self.claim
        if claim is not None and not claim.ended and REFUSED in MOVES[claim.state]:
            self._end(claim.refuse(message, now=time.time()))
        elif claim is not None and not claim.ended:  # decided in line, refused after
            self._release(message)
        if counted:
            return refusal(message, reason=reason, status=status)
        return refused(self, message, reason=reason, status=status)

    # ---------------------------------------------------------------- which slice you got

    def get_state(self):
        state = super().get_state()
        claim = self.claim
        if claim is not None and not claim.ended:
            state[CLAIM_KEY] = claim.to_state()
            if claim.grant is not None:
                state[RECORD_KEY] = claim.record()
        return state

    def load_state(self, state):
        super().load_state(state)
        if not (state.get(CLAIM_KEY) or state.get(RECORD_KEY)):
            return
        # A hub restart: the running server's claim is back (an older hub saved the
        # record alone: the claim is rebuilt around it).
        saved = state.get(CLAIM_KEY) or {
            "key": self.pod_key,
            "user": self.user.name,
            "server_name": self.name,
            "request": self.user_options or {},
        }
        try:
            self.claim = Claim.from_state(saved, state.get(RECORD_KEY))
        except ValueError as e:
            self.log.warning("%s: ignoring a saved claim: %s", self._log_name, e)
            return
        self.user_options = self.claim.shown_options()
        reclaim.track(self, starting=False)  # a running server: its activity counts

    def _release(self, why: str, *, demand_ends: bool = True) -> None:
        """The claim leaves the spawner: give back what it holds on the cache, end it.
        ``demand_ends`` False: the start goes on elsewhere, so no demand record yet."""
        view = self._current_view()
        if view is not None:
            self._forget_reservation(view, why)  # kept while a pod create is in flight
        waitstart.left(self, why)  # out of the line; room may have freed for its head
        dra.delete_claims(self)  # DRA: this start's ResourceClaims
        if self.claim is not None and not self.claim.ended:
            released = self.claim.release(why, now=time.time())
            if demand_ends:
                self._end(released)
            else:
                self.claim = released

    def _end(self, claim: Claim) -> None:
        """``claim`` just ended (refused or released): hold it, and record its demand."""
        self.claim = claim
        demand.claim_ended(self, claim)
        waitstart.claim_ended(self, claim)  # a session's length: the line's ETA history

    def _current_view(self) -> ClusterView | None:
        try:
            return MIGSpawner._views.get(view_key(self._api_configuration().host))
        except RuntimeError:  # no running loop: no view can exist
            return None


def _handled_in_load_user_options(spawner, user_options):
    return None
