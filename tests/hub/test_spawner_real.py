"""MIGSpawner through a real JupyterHub and KubeSpawner, against the real Kubernetes control
plane (kube-apiserver with Node,RBAC; kube-scheduler; kube-controller-manager; etcd) and the
node agent's GPU nodes.

The hub authenticates as the ServiceAccount ``jhub/hub`` holding exactly the Zero to
JupyterHub 4.4.0 hub Role (rendered from the chart by the real helm) and our ClusterRole
from ``helm-values/rbac/``: a verb missing there makes these tests fail, which
:func:`test_a_cluster_role_without_watch_on_nodes_breaks_spawning` demonstrates.
"""

from __future__ import annotations

import asyncio
import copy

import pytest

try:  # JupyterHub >= 6: one shared HTTP client singleton per process
    from jupyterhub.httpclient import JupyterHubHTTPClient
except ImportError:  # JupyterHub 5.5 (the Z2JH 4.4 hub image): tornado's per-loop client
    JupyterHubHTTPClient = None
from hub_harness import (
    H100,
    count_reservations_in_flight,
    pods_of,
    spawn,
    spawn_at_once,
    stop,
    wait_ready,
)
from jupyterhub.tests.mocking import MockHub
from realk8s import HUB_NAMESPACE, hub_kubeconfig, our_cluster_rbac, render_hub_rbac

from mig_spawner import MIGSpawner

pytestmark = pytest.mark.hub


async def spawn_bob_and_check(app, cluster) -> None:
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob", timeout=60)
    (pod,) = pods_of(cluster, user="bob")
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == "1"
    assert container["resources"]["requests"]["nvidia.com/mig-1g.10gb"] == "1"
    assert pod["spec"]["nodeSelector"]["nvidia.com/gpu.product"] == H100
    assert pod["spec"]["nodeName"] in ("h100-a", "h100-b")  # bound by kube-scheduler
    assert pod["status"]["phase"] == "Running" and pod["status"]["podIP"].startswith("127.")
    view = app.users["bob"].spawners[""].cluster_view()
    assert view.known and not view.problem
    assert view.state.usage("vision", "bob").compute_slices == 1


async def test_spawn_and_stop_on_real_kubernetes(real_hub):
    app, cluster = await real_hub()
    await spawn_bob_and_check(app, cluster)
    scheduled = [
        e
        for e in cluster.events
        if e["involvedObject"].get("name") == pods_of(cluster, user="bob")[0]["metadata"]["name"]
    ]
    assert "Scheduled" in {e["reason"] for e in scheduled}
    await stop(app, "bob")
    for _ in range(200):
        if not pods_of(cluster, user="bob"):
            break
        await asyncio.sleep(0.05)
    assert not pods_of(cluster, user="bob")


async def test_fallback_when_the_slice_type_is_full_on_real_kubernetes(real_hub):
    spec = {
        "nodes": [
            {
                "name": "h",
                "gpu": H100,
                "strategy": "mixed",
                "mig": [["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]],
            }
        ]
    }
    app, cluster = await real_hub(spec=spec)
    for i in range(2):  # batch jobs mig-spawner did not create hold both 1g.10gb
        cluster.create_pod(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"batch-{i}"},
                "spec": {
                    "containers": [
                        {
                            "name": "job",
                            "image": "busybox",
                            "resources": {"limits": {"nvidia.com/mig-1g.10gb": "1"}},
                        }
                    ]
                },
            },
            namespace="research",
        )

    def bound(c) -> int:
        return sum(
            1
            for p in c.pods
            if p["metadata"]["namespace"] == "research" and p["spec"].get("nodeName")
        )

    cluster.wait_for(lambda c: bound(c) == 2, what="batch pods bound")
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob", timeout=60)
    (pod,) = pods_of(cluster, user="bob")
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/mig-2g.20gb" in limits and "nvidia.com/mig-1g.10gb" not in limits
    assert pod["metadata"]["annotations"]["mig-spawner/chain"] == "1g.10gb:full,2g.20gb:granted"


async def test_concurrent_spawns_never_overshoot_the_quota_on_real_kubernetes(
    real_hub, monkeypatch
):
    """Ten REST requests at once (aiohttp): exactly the quota's six admitted."""
    users = [f"user{i:02d}" for i in range(10)]
    spec = {
        "nodes": [
            {"name": f"h{i}", "gpu": H100, "strategy": "mixed", "mig": [["1g.10gb"] * 7]}
            for i in range(2)
        ]
    }
    app, cluster = await real_hub(
        spec=spec, teams={"vision": users}, team_quotas={"vision": {"compute_slices": 6}}
    )
    in_flight = count_reservations_in_flight(monkeypatch)
    results = await spawn_at_once(app, users, {"tier": "notebook"})
    admitted = [u for u, status, _ in results if status in (201, 202)]
    refused = [body for _, status, body in results if status == 403]
    assert len(admitted) == 6 and len(refused) == 4, results
    assert max(in_flight) > 1, in_flight  # really concurrent: several at once
    await asyncio.gather(*(wait_ready(app, u, timeout=90) for u in admitted))
    pods = pods_of(cluster, team="vision")
    assert len(pods) == 6 and all(p["spec"].get("nodeName") for p in pods)


async def test_the_hub_service_account_may_do_exactly_what_the_hub_does(control_plane, tmp_path):
    """SelfSubjectAccessReviews as jhub/hub: every call KubeSpawner and the cluster watcher
    make is allowed; what neither grants is not."""
    from mig_spawner.demo.controlplane.mirror import ApiClient

    path = hub_kubeconfig(control_plane, tmp_path / "hub.kubeconfig")
    allowed = [
        ("", "pods", verb, HUB_NAMESPACE) for verb in ("get", "list", "watch", "create", "delete")
    ]
    allowed += [("", "events", verb, HUB_NAMESPACE) for verb in ("get", "list", "watch")]
    allowed += [("", r, v, "") for r in ("nodes", "pods") for v in ("list", "watch")]
    denied = [("", "nodes", "get", ""), ("", "pods", "create", "research")]
    denied += [("", "nodes", "patch", ""), ("", "secrets", "list", "research")]
    async with ApiClient(path) as api:

        async def review(group, resource, verb, namespace) -> bool:
            attrs = {"group": group, "resource": resource, "verb": verb}
            if namespace:
                attrs["namespace"] = namespace
            body = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attrs},
            }
            status, answer = await api.request(
                "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body
            )
            assert status == 201, answer
            return answer["status"]["allowed"]

        for call in allowed:
            assert await review(*call), f"hub may not {call}"
        for call in denied:
            assert not await review(*call), f"hub may {call}"


async def test_a_cluster_role_without_watch_on_nodes_breaks_spawning(control_plane, real_hub):
    """The RBAC is enforced: the same hub with our ClusterRole minus ``watch`` on nodes fails
    the check the other tests pass."""
    docs = our_cluster_rbac(service_account="hub-nowatch", suffix="-nowatch")
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    for rule in role["rules"]:
        if rule["resources"] == ["nodes"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "watch"]
    z2jh = render_hub_rbac()
    binding = copy.deepcopy(next(d for d in z2jh if d["kind"] == "RoleBinding"))
    binding["metadata"]["name"] = "hub-nowatch"
    binding["subjects"][0]["name"] = "hub-nowatch"
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "hub-nowatch", "namespace": HUB_NAMESPACE},
    }
    for doc in [account, binding, *docs]:
        control_plane.apply(doc)
    app, cluster = await real_hub(service_account="hub-nowatch", cluster_sync_timeout=3.0)
    with pytest.raises((AssertionError, TimeoutError, Exception)):
        await spawn_bob_and_check(app, cluster)
    view = app.users["bob"].spawners[""].cluster_view()
    assert view.stats()["failures"]["nodes"] >= 1
    assert "403" in (view.problem or "") or "forbidden" in (view.problem or "").lower()


async def test_hub_restart_rebuilds_usage_from_real_pod_labels(real_hub, tmp_path, monkeypatch):
    """A new hub on the same database lists the real pods (with its ServiceAccount) and
    counts the team's usage from their labels."""
    monkeypatch.setenv("JUPYTERHUB_TEST_DB_URL", f"sqlite:///{tmp_path / 'hub.sqlite'}")
    keep = {"JupyterHub": {"cleanup_servers": False}}
    app, cluster = await real_hub(team_quotas={"vision": {"compute_slices": 3}}, extra=keep)
    await spawn(app, "bob", {"tier": "notebook"})
    await spawn(app, "alice", {"tier": "notebook", "team": "vision"})
    await asyncio.gather(wait_ready(app, "bob", timeout=60), wait_ready(app, "alice", timeout=60))
    config = app.config
    for user in app.users.values():
        for spawner in user.spawners.values():
            spawner.stop_polling()
    app.http_server.stop()
    await app.cleanup()  # cleanup_servers=False: the pods stay
    if JupyterHubHTTPClient is not None:
        JupyterHubHTTPClient.clear_instance()
    await MIGSpawner.stop_cluster_views()
    await MIGSpawner._stop_all_reflectors()
    assert len(pods_of(cluster, team="vision")) == 2
    MockHub.clear_instance()
    app2 = MockHub.instance(config=config)
    app2.test_clean_db = False
    await app2.initialize()
    await app2.start()  # hub_app's teardown stops this one

    assert app2.users["bob"].spawners[""].ready
    r = await spawn(app2, "bob", {"tier": "notebook"}, server="second")
    assert r.status_code in (201, 202), r.text
    await wait_ready(app2, "bob", "second", timeout=60)
    view = app2.users["bob"].spawners["second"].cluster_view()
    assert view.state.usage("vision", "bob").compute_slices == 3
    r = await spawn(app2, "alice", {"tier": "notebook", "team": "vision"}, server="third")
    assert r.status_code == 403 and "3 of 3 compute slices in use" in r.json()["message"]
