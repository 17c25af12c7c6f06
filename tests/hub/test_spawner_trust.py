"""Admission you can trust (issue 10), through a real JupyterHub, KubeSpawner and HTTP.

Each test here failed on the code before the fix it is named for. Each runs twice
(``plane_hub``): on the emulated cluster, and on the real control plane (kube-apiserver,
kube-scheduler, kube-controller-manager, etcd; the hub as Zero to JupyterHub's ServiceAccount).
They touch the cluster over HTTP only (create pods, label and cordon nodes), so the real
scheduler decides where a pod lands and whether it fits. The one API fault a test needs
(a 403 on creating a pod) is an injected fault on the emulator and a real ResourceQuota
on the real API server.
"""

from __future__ import annotations

import asyncio
import logging
import time

from hub_harness import (
    H100,
    count_reservations_in_flight,
    pods_of,
    spawn,
    spawn_at_once,
    stop,
    wait_ready,
)
from jupyterhub.tests.utils import api_request
from realk8s import RealCluster

from mig_spawner.core.pods import hub_marks, label_value

MIG1 = "nvidia.com/mig-1g.10gb"


def h100(name: str, mig, **extra) -> dict:
    return {"name": name, "gpu": H100, "strategy": "mixed", "mig": mig, **extra}


async def settle(view, condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the hub's view never caught up")
        await asyncio.sleep(0.05)


async def wait_done(spawner, timeout: float = 40):
    """Wait for a spawn to end either way; return its exception (None: it started)."""
    deadline = time.monotonic() + timeout
    while not spawner.ready:
        future = spawner._spawn_future
        if future is not None and future.done():
            return future.exception()
        if time.monotonic() > deadline:
            raise TimeoutError("spawn neither started nor failed")
        await asyncio.sleep(0.05)
    return None


def hub_pod(name: str, *, user: str, team: str, node: str, resource=MIG1, cpu="1", **marks):
    """A pod exactly as the hub marks the pods it creates (a previous hub process, say)."""
    labels, annotations = hub_marks(
        hub="jupyterhub",
        user=user,
        team=team,
        tier="notebook",
        requested_profile=marks.pop("requested", "1g.10gb"),
        granted_profile=marks.pop("granted", "1g.10gb"),
        granted_product=H100,
        charge_mode=marks.pop("charge_mode", "granted"),
        node=node,
    )
    labels.update(marks.pop("labels", {}))
    annotations["hub.jupyter.org/servername"] = marks.pop("server", "")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "jhub",
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/hostname",
                                        "operator": "In",
                                        "values": [node],
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
            "containers": [
                {
                    "name": "notebook",
                    "image": "quay.io/jupyter/base-notebook",
                    "resources": {
                        "limits": {resource: "1"},
                        "requests": {resource: "1", "cpu": cpu},
                    },
                }
            ],
        },
    }


# ------------------------------------------------------------------ 1. pin and verify


async def test_the_pod_lands_on_the_node_its_slice_was_reserved_on(plane_hub):
    """The scheduler prefers the node with more CPU; the slice was reserved on the other."""
    spec = {
        "nodes": [
            h100("a-roomy", [["1g.10gb"] * 2 + ["2g.20gb", "3g.40gb"]], cpu="64"),
            h100("b-small", [["1g.10gb"] * 7], cpu="8"),
        ]
    }
    app, cluster = await plane_hub(spec=spec)
    await spawn(app, "bob", {"tier": "notebook"})
    await wait_ready(app, "bob")
    spawner = app.users["bob"].spawners[""]
    (pod,) = pods_of(cluster, user="bob")
    assert spawner.claim.decision.node == "b-small"  # most free 1g slices
    assert pod["spec"]["nodeName"] == "b-small"
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["b-small"]}
            ]
        }
    ]
    assert pod["metadata"]["annotations"]["mig-spawner/node"] == "b-small"


async def test_the_pin_is_anded_into_the_admins_node_affinity(plane_hub):
    spec = {"nodes": [h100("a", [["1g.10gb"] * 7], labels={"zone": "z1"})]}
    admin = [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1", "z2"]}]}]
    app, cluster = await plane_hub(
        spec=spec, extra={"KubeSpawner": {"node_affinity_required": admin}}
    )
    await spawn(app, "bob", {"tier": "notebook"})
    await wait_ready(app, "bob")
    (pod,) = pods_of(cluster, user="bob")
    required = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    (term,) = required["nodeSelectorTerms"]  # one term: zone AND hostname (terms are ORed)
    assert term["matchExpressions"] == [
        {"key": "zone", "operator": "In", "values": ["z1", "z2"]},
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]},
    ]


async def test_failed_scheduling_decides_again_on_another_node_and_says_so(plane_hub, caplog):
    """The reserved node cannot take the pod (not enough CPU): another node is tried."""
    spec = {
        "nodes": [
            h100("a-roomy", [["1g.10gb"] * 2 + ["2g.20gb", "3g.40gb"]], cpu="64"),
            h100("b-small", [["1g.10gb"] * 7], cpu="8"),
        ]
    }
    app, cluster = await plane_hub(spec=spec, extra={"KubeSpawner": {"cpu_guarantee": 16}})
    caplog.set_level(logging.INFO)
    await spawn(app, "bob", {"tier": "notebook"})
    await wait_ready(app, "bob")
    spawner = app.users["bob"].spawners[""]
    (pod,) = pods_of(cluster, user="bob")
    assert pod["spec"]["nodeName"] == "a-roomy"
    required = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert required["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a-roomy"]}
            ]
        }
    ]
    assert len(spawner.placement_notes) == 1
    assert spawner.placement_notes[0].startswith("the scheduler cannot place it on b-small")
    assert "deciding again without b-small (try 2)" in spawner.placement_notes[0]
    assert "Started bob: 1g.10gb on H100 80GB on node a-roomy" in caplog.text
    messages = [e["message"] async for e in spawner.progress()]
    assert any("deciding again without b-small" in m for m in messages), messages
    view = spawner.cluster_view()
    assert not view.state.reservations and view.state.usage("vision", "bob").servers == 1


async def test_with_no_node_left_the_spawn_fails_at_once_with_the_reason(plane_hub):
    spec = {"nodes": [h100("b-small", [["1g.10gb"] * 7], cpu="8")]}
    app, cluster = await plane_hub(spec=spec, extra={"KubeSpawner": {"cpu_guarantee": 16}})
    started = time.monotonic()
    await spawn(app, "bob", {"tier": "notebook"})
    error = await wait_done(app.users["bob"].spawners[""])
    assert time.monotonic() - started < 15  # start_timeout is 30 s
    assert error is not None
    assert "No slice for '1g notebook' is free" in str(error.jupyterhub_message)
    await settle(None, lambda: not pods_of(cluster, user="bob"))
    view = app.users["bob"].spawners[""].cluster_view()
    assert not view.state.reservations and view.state.usage("vision", "bob").servers == 0


def cordon_b_first(clusters: list):
    """A ``modify_pod_hook`` that cordons node b (of ``clusters[0]``) once the first pod is
    pinned, and waits for the hub's view to see it: the decision chose b, the pod cannot
    bind there."""

    async def hook(spawner, pod):
        if pod.spec.node_selector is not None and not getattr(spawner, "_cordoned", False):
            spawner._cordoned = True
            clusters[0].cordon("b")
            view = spawner.cluster_view()
            await settle(view, lambda: not view.state.nodes["b"].usable)
        return pod

    return hook


async def test_a_node_cordoned_before_the_pod_binds_is_left_for_another(plane_hub):
    spec = {"nodes": [h100("a", [["1g.10gb"] * 2]), h100("b", [["1g.10gb"] * 7])]}
    clusters = []
    app, cluster = await plane_hub(
        spec=spec, extra={"KubeSpawner": {"modify_pod_hook": cordon_b_first(clusters)}}
    )
    clusters.append(cluster)
    await spawn(app, "bob", {"tier": "notebook"})
    await wait_ready(app, "bob")
    spawner = app.users["bob"].spawners[""]
    (pod,) = pods_of(cluster, user="bob")
    assert pod["spec"]["nodeName"] == "a"
    assert any("node b is cordoned" in n for n in spawner.placement_notes), spawner.placement_notes


async def test_a_cancel_lost_as_the_pod_create_returns_does_not_stall_the_move(
    plane_hub, monkeypatch
):
    """Python 3.11's ``asyncio.wait_for`` drops a cancellation that arrives as the call it
    wraps returns (CPython issue 86296), and KubeSpawner's pod create runs in one. The start
    on cordoned b was cancelled at that moment, went on waiting for its pod to run, and
    the move to a came only after ``start_timeout`` (a CI failure: "not ready after 30s").
    Here the create on b drops the first cancel every time, as ``wait_for`` does now and
    then. The move's cancel comes once the hub's view sees the pod on cordoned b: on the real
    control plane the watch event may beat the create's own answer, so the cancel is
    dropped whether it comes during the request or after it."""
    from mig_spawner.hub.spawner import MIGSpawner

    spec = {"nodes": [h100("a", [["1g.10gb"] * 2]), h100("b", [["1g.10gb"] * 7])]}
    dropped = []
    create = MIGSpawner._make_create_pod_request

    async def create_dropping_a_cancel(self, pod, request_timeout):
        if self.claim is None or self.claim.node != "b":
            return await create(self, pod, request_timeout)
        request = asyncio.ensure_future(create(self, pod, request_timeout))
        cancelled = False
        while True:
            try:
                created = await asyncio.shield(request)
                break
            except asyncio.CancelledError:
                if request.cancelled():
                    raise
                cancelled = True  # the request goes on, and so does its caller
        if not cancelled:
            try:
                await asyncio.sleep(self.start_timeout)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            dropped.append(pod.metadata.name)  # what wait_for does with it
        return created

    monkeypatch.setattr(MIGSpawner, "_make_create_pod_request", create_dropping_a_cancel)
    clusters = []
    app, cluster = await plane_hub(
        spec=spec, extra={"KubeSpawner": {"modify_pod_hook": cordon_b_first(clusters)}}
    )
    clusters.append(cluster)
    spawner = app.users["bob"].spawners[""]
    await spawn(app, "bob", {"tier": "notebook"})
    await wait_ready(app, "bob", timeout=spawner.start_timeout / 2)
    assert dropped == ["jupyter-bob"]
    (pod,) = pods_of(cluster, user="bob")
    assert pod["spec"]["nodeName"] == "a"


async def test_a_node_gfd_has_not_labelled_is_never_granted_and_logged_once(plane_hub, caplog):
    spec = {"nodes": [h100("fresh", [["1g.10gb"] * 7])]}
    app, cluster = await plane_hub(spec=spec)
    caplog.set_level(logging.INFO)
    spawner = app.users["bob"].spawners[""]
    view = spawner.cluster_view()
    await view.wait_known(5)
    cluster.label_node("fresh", {"nvidia.com/gpu.product": None})
    await settle(view, lambda: not view.state.nodes["fresh"].offers)
    for i in range(3):  # more events for the same garbled node: logged once, not per event
        cluster.label_node("fresh", {"unrelated": str(i)})
    await settle(view, lambda: view.state.nodes["fresh"].labels.get("unrelated") == "2")
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code == 503, r.text
    assert "on unknown GPU" not in r.text
    assert not pods_of(cluster, user="bob")
    logged = [r for r in caplog.records if "Node fresh: GPU Feature Discovery" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    # through the hub's own log, whose handlers print it (a bare module logger has none)
    assert logged[0].name == spawner.log.name


# ------------------------------------------------------------------ 2. restart-safe


async def test_an_unbound_pinned_pod_holds_its_slice_and_quota_after_a_restart(plane_hub):
    """A hub restarted while its pod waits to be scheduled: the first list sees the pin."""
    spec = {"nodes": [h100("only", [["1g.10gb"]], cpu="8")]}
    app, cluster = await plane_hub(spec=spec, team_quotas={"vision": {"servers": 1}, "nlp": {}})
    # Created by the previous hub process, pinned, not bound (asks for more CPU for now).
    cluster.create_pod(
        hub_pod("jupyter-bob", user="bob", team="vision", node="only", cpu="16"), "jhub"
    )
    r = await spawn(app, "carol", {"tier": "notebook"})
    assert r.status_code == 503, r.text  # the only slice is bob's
    assert "(0 of 1 free)" in r.json()["message"]
    view = app.users["carol"].spawners[""].cluster_view()
    assert view.state.usage("vision", "alice").servers == 1  # ... and vision's one server
    assert not pods_of(cluster, user="carol")


# ------------------------------------------------------------------ 3. injective scopes


async def test_a_user_named_like_anothers_encoding_gets_their_own_quota(plane_hub):
    real = "jürgen"
    twin = label_value(real)  # a valid user name in its own right
    assert twin != real
    app, _cluster = await plane_hub(
        teams={"vision": ["bob"]}, default_quota={"compute_slices": 1}, team_quotas={"vision": {}}
    )
    from jupyterhub.tests.utils import add_user

    for name in (real, twin):
        add_user(app.db, app, name=name)
    r = await spawn(app, real, {"tier": "notebook"}, server="private-name")
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, real, "private-name")
    r = await spawn(app, twin, {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text  # twin's own personal quota is untouched
    await wait_ready(app, twin)
    r = await spawn(app, twin, {"tier": "notebook"}, server="again")
    assert r.status_code == 403
    message = r.json()["message"]
    assert "private-name" not in message  # only the asking user's own servers
    assert "Stop one of your servers: default server (1g.10gb)" in message


async def test_two_teams_whose_names_encode_alike_have_separate_quotas(plane_hub):
    team = "Data Science"
    twin = label_value(team)
    app, cluster = await plane_hub(
        teams={team: ["bob"], twin: ["carol"]},
        team_quotas={team: {"compute_slices": 1}, twin: {"compute_slices": 1}},
    )
    assert (await spawn(app, "bob", {"tier": "notebook"})).status_code in (201, 202)
    await wait_ready(app, "bob")
    r = await spawn(app, "carol", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "carol")
    (pod,) = pods_of(cluster, user="carol")
    assert pod["metadata"]["annotations"]["mig-spawner/team"] == twin


# ------------------------------------------------------------------ 4. trusted charges


async def test_pods_outside_the_hubs_namespace_or_mark_never_count_toward_a_quota(plane_hub):
    app, cluster = await plane_hub(team_quotas={"vision": {"compute_slices": 1}})
    forged = hub_pod("forged", user="bob", team="vision", node="h100-a")
    forged["metadata"]["namespace"] = "research"
    cluster.create_pod(forged, "research")
    unmarked = hub_pod("unmarked", user="bob", team="vision", node="h100-a")
    del unmarked["metadata"]["annotations"]["mig-spawner/hub"]
    cluster.create_pod(unmarked, "jhub")
    view = app.users["bob"].spawners[""].cluster_view()
    await view.wait_known(5)
    await settle(view, lambda: len(view.state.pods) == 2)
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text  # neither took vision's only slice of quota
    await wait_ready(app, "bob")
    # ... but both still hold their slices: 9 - 2 foreign - bob's
    kind = next(k for k in view.state.slice_types() if k.profile == "1g.10gb")
    assert sum(view.state.free(n, kind) for n in view.state.nodes_offering(kind)) == 6


async def test_a_charge_label_that_parses_to_nan_does_not_disable_a_memory_quota(plane_hub):
    app, cluster = await plane_hub(team_quotas={"vision": {"memory_gb": 20}})
    nan = hub_pod(
        "jupyter-alice",
        user="alice",
        team="vision",
        node="h100-a",
        labels={"mig-spawner/charge-compute-slices": "0", "mig-spawner/charge-memory-gb": "nan"},
    )
    cluster.create_pod(nan, "jhub")
    view = app.users["bob"].spawners[""].cluster_view()
    await view.wait_known(5)
    await settle(view, lambda: "jhub/jupyter-alice" in view.state.pods)
    assert (await spawn(app, "bob", {"tier": "notebook"})).status_code in (201, 202)
    await wait_ready(app, "bob")
    r = await spawn(app, "bob", {"tier": "notebook"}, server="two")
    assert r.status_code == 403, r.text
    assert "20 of 20 GB of GPU memory in use" in r.json()["message"]


# ------------------------------------------------------------------ 5. no escape


async def test_a_server_of_a_removed_team_counts_against_the_quota_that_applies_now(plane_hub):
    app, cluster = await plane_hub(team_quotas={"vision": {"compute_slices": 1}})
    # bob's server from when "robotics" still had a quota (since removed from team_quotas)
    cluster.create_pod(
        hub_pod("jupyter-bob--old", user="bob", team="robotics", node="h100-a"), "jhub"
    )
    view = app.users["bob"].spawners[""].cluster_view()
    await view.wait_known(5)
    await settle(view, lambda: "jhub/jupyter-bob--old" in view.state.pods)
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code == 403, r.text
    assert "1 of 1 compute slices in use" in r.json()["message"]


# ------------------------------------------------------------------ 6. refusal != failure


async def test_ten_refusals_in_a_row_do_not_stop_a_hub_with_a_failure_limit_of_5(plane_hub, caplog):
    app, _cluster = await plane_hub(
        team_quotas={"vision": {"compute_slices": 1}},
        extra={"MIGSpawner": {"consecutive_failure_limit": 5}},
    )
    assert app.users["bob"].spawners[""].consecutive_failure_limit == 5
    assert (await spawn(app, "bob", {"tier": "notebook"})).status_code in (201, 202)
    await wait_ready(app, "bob")
    for i in range(10):
        r = await spawn(app, "bob", {"tier": "training"}, server="big")
        assert r.status_code == 403, (i, r.text)
        await wait_done(app.users["bob"].spawners["big"])
    assert app.tornado_application.settings.get("failure_count", 0) == 0
    assert "consecutive spawn failures" not in caplog.text
    await asyncio.sleep(2.5)  # the hub's abort would fire 2 s after the limit
    r = await api_request(app, "users", "bob")
    assert r.status_code == 200  # still up and answering


# ------------------------------------------------------------------ 7. starts start clean


def refuse_the_next_training_pod(cluster) -> None:
    """Make the API server answer 403 to creating the training tier's pod."""
    if not isinstance(cluster, RealCluster):
        cluster.inject_faults(path_prefix="/api/v1/namespaces/jhub/pods", status=403, method="POST")
        return
    # A ResourceQuota that allows no 3g.40gb slice in the hub's namespace: the real quota
    # admission plugin refuses the pod ("exceeded quota"), once the quota controller has
    # filled in the quota's status.
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-3g", "namespace": "jhub"},
        "spec": {"hard": {"requests.nvidia.com/mig-3g.40gb": "0"}},
    }
    status, body = cluster.plane.request("POST", "/api/v1/namespaces/jhub/resourcequotas", quota)
    assert status == 201, body
    cluster.wait_for(
        lambda c: (
            (c.plane.get("/api/v1/namespaces/jhub/resourcequotas/no-3g") or {})
            .get("status", {})
            .get("hard")
        ),
        what="the quota controller to fill in the ResourceQuota's status",
    )


async def test_a_retry_on_another_tier_requests_only_the_new_slice(plane_hub):
    """The same Spawner object starts again (JupyterHub keeps a failed one until the next
    spawn; mig-spawner's own retries restart it): nothing of the last start remains."""
    app, cluster = await plane_hub(
        extra={"KubeSpawner": {"extra_labels": {"owner": "admin"}, "tolerations": []}}
    )
    refuse_the_next_training_pod(cluster)
    await spawn(app, "bob", {"tier": "training"})
    spawner = app.users["bob"].spawners[""]
    assert await wait_done(spawner) is not None
    assert not pods_of(cluster, user="bob")  # the API server refused to create it
    if isinstance(cluster, RealCluster):
        cluster.plane.request("DELETE", "/api/v1/namespaces/jhub/resourcequotas/no-3g")
    else:
        cluster.clear_faults()
    spawner.user_options = {"tier": "notebook"}
    await spawner.load_user_options()  # what a retry of this spawner runs
    manifest = await spawner.get_pod_manifest()
    spawner._release("test done")
    limits = manifest.spec.containers[0].resources.limits
    assert {k for k in limits if k.startswith("nvidia.com/")} == {MIG1}
    assert manifest.metadata.labels["owner"] == "admin"
    assert manifest.metadata.labels["mig-spawner/tier"] == "notebook"
    terms = manifest.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    (term,) = terms.node_selector_terms
    assert len(term.match_expressions) == 1  # one pin, not one per start

    r = await spawn(app, "bob", {"tier": "notebook"})  # and through the REST API
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob")
    (pod,) = pods_of(cluster, user="bob")
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert {k for k in limits if k.startswith("nvidia.com/")} == {MIG1}
    await stop(app, "bob")


# ------------------------------------------------------------------ 9. really concurrent


async def test_concurrent_spawns_have_several_reservations_in_flight(plane_hub, monkeypatch):
    """Twenty REST requests at once through aiohttp: never more admitted than the quota."""
    users = [f"user{i:02d}" for i in range(20)]
    spec = {"nodes": [h100(f"h{i}", [["1g.10gb"] * 7]) for i in range(3)]}
    app, cluster = await plane_hub(
        spec=spec, teams={"vision": users}, team_quotas={"vision": {"compute_slices": 8}}
    )
    in_flight = count_reservations_in_flight(monkeypatch)
    results = await spawn_at_once(app, users, {"tier": "notebook"})
    admitted = [u for u, status, _ in results if status in (201, 202)]
    refused = [body for _, status, body in results if status == 403]
    assert len(admitted) == 8 and len(refused) == 12, results
    assert max(in_flight) > 1, in_flight  # really concurrent: several at once
    await asyncio.gather(*(wait_ready(app, u) for u in admitted))
    pods = pods_of(cluster, team="vision")
    assert len(pods) == 8
    placed = [
        (p["spec"]["nodeName"], p["metadata"]["annotations"]["mig-spawner/node"]) for p in pods
    ]
    assert all(node == pinned for node, pinned in placed)
