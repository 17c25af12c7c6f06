"""``backend = "dra"``, a spawn's ResourceClaim through a real hub on the real control plane:
the quota refuses before any claim exists, a cancel frees the claim, a restarted hub
counts usage from the allocated claims, and the RBAC for claims is enforced."""

from __future__ import annotations

import asyncio
import copy

import pytest
from hub_harness import BALANCED_H100, H100, pods_of, spawn, stop, wait_ready
from jupyterhub.tests.mocking import MockHub
from realk8s import HUB_NAMESPACE, our_cluster_rbac, render_hub_rbac
from test_dra_fallback import claims_of, take_devices, until_held

from mig_spawner import MIGSpawner

try:  # JupyterHub >= 6: one shared HTTP client singleton per process
    from jupyterhub.httpclient import JupyterHubHTTPClient
except ImportError:  # JupyterHub 5.5
    JupyterHubHTTPClient = None

pytestmark = pytest.mark.hub


async def until(predicate, what: str, tries: int = 300) -> None:
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def test_the_quota_refuses_before_any_claim_exists(real_hub):
    app, cluster = await real_hub(
        spec=BALANCED_H100, dra=True, team_quotas={"vision": {"compute_slices": 1}}
    )
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob", timeout=60)
    assert len(claims_of(cluster)) == 1
    r = await spawn(app, "alice", {"tier": "notebook", "team": "vision"})
    assert r.status_code == 403, r.text
    assert "1 of 1 compute slice" in r.json()["message"]
    (only,) = claims_of(cluster)  # bob's: none was made for alice
    assert only["metadata"]["annotations"]["mig-spawner/pod"] == "jupyter-bob"
    assert not pods_of(cluster, user="alice")


async def test_cancelling_a_start_deletes_its_claim_and_frees_the_device(real_hub):
    # the containers start a minute after binding: the start is cancelled before
    app, cluster = await real_hub(spec=BALANCED_H100, dra=True, start_delay=60.0)
    app.tornado_application.settings["slow_spawn_timeout"] = 0
    spawner = app.users["bob"].spawners[""]
    view = spawner.cluster_view()
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code == 202, r.text
    await until(lambda: claims_of(cluster) and pods_of(cluster, user="bob"), "bob's claim and pod")
    await until_held(view, {"nvidia.com/mig-1g.10gb": 1}, 1)  # allocated, as the hub sees it
    (claim,) = claims_of(cluster)
    assert claim["status"]["allocation"]["devices"]["results"][0]["request"] == "gpu/s0-1g-10gb"
    (pod,) = pods_of(cluster, user="bob")  # owned by its pod before the server runs
    await until(
        lambda: (
            [o["uid"] for o in claims_of(cluster)[0]["metadata"].get("ownerReferences") or []]
            == [pod["metadata"]["uid"]]
        ),
        "the claim owned by bob's pending pod",
    )
    await stop(app, "bob")
    await until(lambda: not claims_of(cluster), "the claim deleted")
    await until(lambda: not view.dra.claims and not view.state.pods, "the hub's view freed")
    one_g = next(k for k in view.state.nodes["h"].offers if k.profile == "1g.10gb")
    assert view.state.free(view.state.nodes["h"], one_g) == 2


async def test_a_restarted_hub_counts_usage_from_the_allocated_claims(
    real_hub, tmp_path, monkeypatch
):
    monkeypatch.setenv("JUPYTERHUB_TEST_DB_URL", f"sqlite:///{tmp_path / 'hub.sqlite'}")
    keep = {"JupyterHub": {"cleanup_servers": False}}
    app, cluster = await real_hub(
        spec=BALANCED_H100, dra=True, team_quotas={"vision": {"compute_slices": 3}}, extra=keep
    )
    take_devices(cluster, "1g.10gb", 2)
    first = app.users["bob"].spawners[""].cluster_view()
    await first.wait_known(10)
    await until_held(first, {"nvidia.com/mig-1g.10gb": 1}, 2)
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob", timeout=60)  # on the 2g: the 1g devices are taken
    config = app.config
    for user in app.users.values():
        for spawner in user.spawners.values():
            spawner.stop_polling()
    app.http_server.stop()
    await app.cleanup()  # cleanup_servers=False: the pod and its claim stay
    if JupyterHubHTTPClient is not None:
        JupyterHubHTTPClient.clear_instance()
    await MIGSpawner.stop_cluster_views()
    await MIGSpawner._stop_all_reflectors()
    assert len(claims_of(cluster)) == 1
    MockHub.clear_instance()
    app2 = MockHub.instance(config=config)
    app2.test_clean_db = False
    await app2.initialize()
    await app2.start()  # hub_app's teardown stops this one

    assert app2.users["bob"].spawners[""].ready
    view = app2.users["alice"].spawners[""].cluster_view()
    await view.wait_known(10)
    # the pod requests no extended resource: its 2g is known from its claim alone
    await until_held(view, {"nvidia.com/mig-2g.20gb": 1}, 1)
    (bob,) = view.state.pods_of("bob")
    assert bob.profile == "2g.20gb"
    assert view.state.usage("vision", "bob").compute_slices == 2
    r = await spawn(app2, "alice", {"tier": "training", "team": "vision"})
    assert r.status_code == 403, r.text
    assert "2 of 3 compute slices in use" in r.json()["message"]
    await stop(app2, "bob")  # a restored server's claim is found through its pod
    await until(lambda: not claims_of(cluster), "bob's claim deleted")


async def test_a_cluster_role_without_claim_create_refuses_in_one_line(control_plane, real_hub):
    """The RBAC is enforced: our ClusterRole minus ``create`` on resourceclaims."""
    docs = our_cluster_rbac(service_account="hub-noclaim", suffix="-noclaim")
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    for rule in role["rules"]:
        if rule["resources"] == ["resourceclaims"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    z2jh = render_hub_rbac()
    binding = copy.deepcopy(next(d for d in z2jh if d["kind"] == "RoleBinding"))
    binding["metadata"]["name"] = "hub-noclaim"
    binding["subjects"][0]["name"] = "hub-noclaim"
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "hub-noclaim", "namespace": HUB_NAMESPACE},
    }
    for doc in [account, binding, *docs]:
        control_plane.apply(doc)
    spec = {"nodes": [{"name": "h", "gpu": H100, "mig": [["1g.10gb"] * 7]}]}
    app, cluster = await real_hub(spec=spec, dra=True, service_account="hub-noclaim")
    r = await spawn(app, "bob", {"tier": "notebook"})
    spawner = app.users["bob"].spawners[""]
    for _ in range(600):
        future = spawner._spawn_future
        if r.status_code >= 400 or (future is not None and future.done()):
            break
        await asyncio.sleep(0.05)
    message = r.json()["message"] if r.status_code >= 400 else str(future.exception())
    assert "GPU claim could not be created (Kubernetes answered 403 Forbidden)" in message
    assert "\n" not in message.strip() and "Traceback" not in message
    assert claims_of(cluster) == [] and not pods_of(cluster, user="bob")
    # the watches themselves work: the role still lists and watches
    assert spawner.cluster_view().known
