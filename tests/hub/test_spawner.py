"""MIGSpawner through a real JupyterHub and KubeSpawner, against the emulated cluster."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from hub_harness import BALANCED_H100, H100, pods_of, spawn, stop, wait_ready

try:  # JupyterHub >= 6: one shared HTTP client singleton per process
    from jupyterhub.httpclient import JupyterHubHTTPClient
except ImportError:  # JupyterHub 5.5 (the Z2JH 4.4 hub image): tornado's per-loop client
    JupyterHubHTTPClient = None
from jupyterhub.tests.mocking import MockHub
from jupyterhub.tests.utils import api_request, get_page

from mig_spawner import MIGSpawner


async def create_foreign_pod(cluster, name: str, resource: str, namespace: str = "research"):
    """A pod mig-spawner did not create, e.g. a batch job, holding a slice."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "containers": [
                {"name": "job", "image": "busybox", "resources": {"limits": {resource: "1"}}}
            ]
        },
    }
    async with aiohttp.ClientSession() as http:
        r = await http.post(f"{cluster.url}/api/v1/namespaces/{namespace}/pods", json=body)
        assert r.status == 201, await r.text()
    for _ in range(200):
        pod = next((p for p in cluster.pods if p["metadata"]["name"] == name), None)
        if pod and pod.get("spec", {}).get("nodeName"):
            return pod
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} was never scheduled")


async def test_spawn_and_stop_on_the_requested_slice(hub):
    app, cluster = await hub()
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob")
    (pod,) = pods_of(cluster, user="bob")
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == "1"
    assert container["resources"]["requests"]["nvidia.com/mig-1g.10gb"] == "1"
    assert pod["spec"]["nodeSelector"]["nvidia.com/gpu.product"] == H100
    labels = pod["metadata"]["labels"]
    assert {k: labels[k] for k in labels if k.startswith("mig-spawner/")} == {
        "mig-spawner/team": "vision",
        "mig-spawner/user": "bob",
        "mig-spawner/tier": "notebook",
        "mig-spawner/profile": "1g.10gb",
    }
    annotations = pod["metadata"]["annotations"]
    assert annotations["mig-spawner/requested-profile"] == "1g.10gb"
    assert annotations["mig-spawner/granted-profile"] == "1g.10gb"
    spawner = app.users["bob"].spawners[""]
    view = spawner.cluster_view()
    assert not view.state.reservations  # the bound pod now holds the slice itself
    assert view.state.usage("vision", "bob").compute_slices == 1

    await stop(app, "bob")
    for _ in range(100):
        if not pods_of(cluster, user="bob"):
            break
        await asyncio.sleep(0.05)
    assert not pods_of(cluster, user="bob")
    await asyncio.sleep(0.2)
    assert view.state.usage("vision", "bob").servers == 0


async def test_fallback_when_the_slice_type_is_full_and_the_user_is_told(hub):
    app, cluster = await hub(spec=BALANCED_H100)
    for i in range(2):
        await create_foreign_pod(cluster, f"batch-{i}", "nvidia.com/mig-1g.10gb")
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob")
    (pod,) = pods_of(cluster, user="bob")
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/mig-2g.20gb" in limits and "nvidia.com/mig-1g.10gb" not in limits
    ann = pod["metadata"]["annotations"]
    assert ann["mig-spawner/requested-profile"] == "1g.10gb"
    assert ann["mig-spawner/granted-profile"] == "2g.20gb"
    assert ann["mig-spawner/chain"] == "1g.10gb:full,2g.20gb:granted"
    spawner = app.users["bob"].spawners[""]
    assert spawner.claim.decision.message.startswith(
        "Starting on the larger 1 × 2g.20gb · 20 GB · 32 SMs on H100 80GB: "
        "every 1g.10gb on H100 80GB is taken (0 of 2 free)."
    )
    events = [e async for e in _first_progress(spawner)]
    assert events[0]["message"].startswith("Starting on the larger 1 × 2g.20gb")
    # Which slice it got, everywhere: env vars, user_options (REST/admin page), state.
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["MIG_SPAWNER_TIER"] == "notebook" and env["MIG_SPAWNER_SLICE"] == "2g.20gb"
    assert env["MIG_SPAWNER_PROFILE"] == "notebook" and env["MIG_SPAWNER_FALLBACK"] == "true"
    assert env["MIG_SPAWNER_GPU"] == "H100 80GB" and env["MIG_SPAWNER_TEAM"] == "vision"
    assert env["MIG_SPAWNER_NODE"] == pod["spec"]["nodeName"]
    model = (await api_request(app, "users", "bob")).json()["servers"][""]
    record = model["user_options"]["mig"]
    assert record["slice"] == "2g.20gb" and record["requested"] == "1g.10gb"
    assert record["fallback"] is True and record["tier_name"] == "1g notebook"
    assert spawner.get_state()["mig"] == record
    # the admin page's "Profile" column shows user_options["profile"]: what it got
    assert (
        model["user_options"]["profile"] == "notebook: 2g.20gb on H100 80GB (fallback from 1g.10gb)"
    )
    await stop(app, "bob")
    assert spawner.user_options["profile"] == "notebook"  # the form pre-selects it again


async def _first_progress(spawner):
    async for event in spawner.progress():
        yield event
        return


async def test_quota_refusal_is_clear_and_creates_no_pod(hub):
    app, cluster = await hub(team_quotas={"vision": {"compute_slices": 3}})
    assert (await spawn(app, "bob", {"tier": "notebook"})).status_code in (201, 202)
    await wait_ready(app, "bob")
    r = await spawn(app, "bob", {"tier": "training"}, server="big")
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert message == (
        "'3g training' needs 3 compute slices (3g.40gb on H100 80GB); team vision's GPU "
        "quota has 1 of 3 compute slices in use (1 compute slice of them yours), 2 left. "
        "Stop one of your servers: default server (1g.10gb), or ask your hub admin for a "
        "larger quota."
    )
    assert len(pods_of(cluster, user="bob")) == 1
    view = app.users["bob"].spawners[""].cluster_view()
    assert not view.state.reservations  # the refusal reserved nothing


async def test_rest_api_spawn_with_tier_and_team(hub):
    app, cluster = await hub()
    r = await spawn(app, "alice", {"tier": "training", "team": "nlp"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "alice")
    (pod,) = pods_of(cluster, user="alice")
    assert pod["metadata"]["labels"]["mig-spawner/team"] == "nlp"
    assert "nvidia.com/mig-3g.40gb" in pod["spec"]["containers"][0]["resources"]["limits"]


async def test_forged_options_are_rejected_with_400_class(hub):
    app, cluster = await hub()
    cases = [
        # issue 19: refused for what it is (not the user's to set), not "must be a string"
        (
            {"tier": "notebook", "extra_resource_limits": {"nvidia.com/gpu": "8"}},
            400,
            "accepts no 'extra_resource_limits'",
        ),
        (
            {"tier": "notebook", "node_selector": {"kubernetes.io/hostname": "h100-a"}},
            400,
            "accepts no 'node_selector'",
        ),
        ({"tier": "no-such-tier"}, 400, "no-such-tier"),
        ({"tier": "full"}, 403, "only for members of vision"),  # carol is not in vision
        ({"tier": "notebook", "team": "vision"}, 403, "not a member"),
    ]
    for options, status, reason in cases:
        r = await spawn(app, "carol", options)
        assert r.status_code == status, (options, r.text)
        assert "Traceback" not in r.text
        assert reason in r.json()["message"], (options, r.text)
        assert "must be a string" not in r.json()["message"]
    assert not pods_of(cluster, user="carol")
    assert not [p for p in cluster.pods if p["metadata"]["namespace"] == "jhub"]


async def test_twenty_spawns_in_a_row_never_overshoot_the_quota(hub):
    """One after another (the test helper's client is serial): the quota and its message.

    The same storm sent truly at once, counting the reservations in flight, is
    ``test_spawner_trust.test_concurrent_spawns_have_several_reservations_in_flight``.
    """
    users = [f"user{i:02d}" for i in range(20)]
    spec = {
        "nodes": [
            {"name": f"h{i}", "gpu": H100, "strategy": "mixed", "mig": [["1g.10gb"] * 7]}
            for i in range(3)
        ]
    }
    app, cluster = await hub(
        spec=spec, teams={"vision": users}, team_quotas={"vision": {"compute_slices": 8}}
    )
    responses = [await spawn(app, u, {"tier": "notebook"}) for u in users]
    admitted = [u for u, r in zip(users, responses, strict=True) if r.status_code in (201, 202)]
    refused = [r for r in responses if r.status_code == 403]
    assert len(admitted) == 8 and len(refused) == 12
    assert all("team vision's GPU quota" in r.json()["message"] for r in refused)
    await asyncio.gather(*(wait_ready(app, u) for u in admitted))
    assert len(pods_of(cluster, team="vision")) == 8


async def test_hub_restart_rebuilds_usage_from_pod_labels(hub, tmp_path, monkeypatch):
    """Stop the hub (servers keep running, as in Z2JH), start a new one on the same database:
    the new hub knows nothing but what it lists, and still counts the team's usage."""
    monkeypatch.setenv("JUPYTERHUB_TEST_DB_URL", f"sqlite:///{tmp_path / 'hub.sqlite'}")
    keep = {"JupyterHub": {"cleanup_servers": False}}
    app, cluster = await hub(team_quotas={"vision": {"compute_slices": 3}}, extra=keep)
    await spawn(app, "bob", {"tier": "notebook"})
    await spawn(app, "alice", {"tier": "notebook", "team": "vision"})
    await asyncio.gather(wait_ready(app, "bob"), wait_ready(app, "alice"))
    config = app.config
    claim_before = app.users["bob"].spawners[""].claim
    assert claim_before.state == "bound" and claim_before.grant["slice"] == "1g.10gb"

    # The first hub goes away; its pods stay. (Not app.stop(): in one test process that
    # also cancels every task on the loop, the emulated cluster's included.)
    for user in app.users.values():
        for spawner in user.spawners.values():
            spawner.stop_polling()
    app.http_server.stop()
    await app.cleanup()  # cleanup_servers=False: stops the proxy, leaves the servers
    if JupyterHubHTTPClient is not None:
        JupyterHubHTTPClient.clear_instance()  # closed by that hub; a new process has its own
    await MIGSpawner.stop_cluster_views()  # ... and so is everything it held in memory
    await MIGSpawner._stop_all_reflectors()
    assert len(pods_of(cluster, team="vision")) == 2
    MockHub.clear_instance()
    app2 = MockHub.instance(config=config)
    app2.test_clean_db = False  # keep the users and their servers' state (not configurable)
    await app2.initialize()
    await app2.start()

    assert app2.users["bob"].spawners[""].ready  # the server survived the restart
    # ... and its claim is rebuilt from the saved state: bound, the same grant and request
    claim = app2.users["bob"].spawners[""].claim
    assert claim == claim_before and claim.request == claim_before.request == {"tier": "notebook"}
    model = (await api_request(app2, "users", "bob")).json()["servers"][""]
    assert model["user_options"]["mig"] == claim.record()
    r = await spawn(app2, "bob", {"tier": "notebook"}, server="second")
    assert r.status_code in (201, 202), r.text
    await wait_ready(app2, "bob", "second")
    view = app2.users["bob"].spawners["second"].cluster_view()
    assert view.stats()["relists"] == {"nodes": 1, "pods": 1}  # a fresh view, built by listing
    assert view.state.usage("vision", "bob").compute_slices == 3
    r = await spawn(app2, "alice", {"tier": "notebook", "team": "vision"}, server="third")
    assert r.status_code == 403 and "3 of 3 compute slices in use" in r.json()["message"]


async def test_watch_failure_does_not_kill_the_hub(hub):
    app, cluster = await hub()
    await spawn(app, "bob", {"tier": "notebook"})
    await wait_ready(app, "bob")
    view = app.users["bob"].spawners[""].cluster_view()
    cluster.inject_faults(path_prefix="/api/v1/nodes", status=500, count=4)
    cluster.break_watches()
    for _ in range(100):  # the feed notices, logs and retries with backoff
        if view.stats()["failures"]["nodes"]:
            break
        await asyncio.sleep(0.05)
    assert view.stats()["failures"]["nodes"] >= 1
    r = await api_request(app, "users", "bob")
    assert r.status_code == 200  # the hub is alive and serving
    assert "Kubernetes API answered 500" in view.problem or view.known
    for _ in range(300):  # ... and recovers by itself once the API answers again
        if view.known and view.stats()["failures"]["nodes"] == 0:
            break
        await asyncio.sleep(0.05)
    assert view.known
    r = await spawn(app, "alice", {"tier": "notebook", "team": "vision"})
    assert r.status_code in (201, 202), r.text


async def test_spawn_form_shows_tiers_availability_and_quota(hub):
    app, _cluster = await hub()
    cookies = await app.login_user("alice")
    r = await get_page("spawn", app, cookies=cookies)
    assert r.status_code == 200
    html = r.content.decode("utf-8")  # the page declares utf-8 in <meta>, not the header
    assert "1g notebook" in html and "3g training" in html and "7g full GPU" in html
    assert "1 × 1g.10gb · 10 GB · 16 SMs on H100 80GB" in html
    assert "9 of 9 free" in html
    assert 'name="profile-option-notebook--team"' in html  # alice is in two teams
    assert "vision (0 of 8 compute slices in use)" in html
    cookies = await app.login_user("carol")
    html = (await get_page("spawn", app, cookies=cookies)).content.decode("utf-8")
    assert "7g full GPU" not in html  # only for vision
    assert "team nlp: 0 of 4 compute slices in use" in html


async def test_spawn_from_the_form_submits_tier_and_team(hub):
    app, cluster = await hub()
    cookies = await app.login_user("alice")
    page = await get_page("spawn", app, cookies=cookies)
    assert page.status_code == 200
    r = await get_page(
        "spawn/alice",
        app,
        cookies=cookies,
    )
    assert r.status_code == 200
    from jupyterhub.tests.utils import async_requests, public_host, ujoin

    url = ujoin(public_host(app), app.hub.base_url, "spawn/alice")
    r = await async_requests.post(
        url,
        data={
            "profile": "notebook",
            "profile-option-notebook--team": "nlp",
            "_xsrf": cookies["_xsrf"],
        },
        cookies=cookies,
        headers={"Sec-Fetch-Mode": "navigate"},
        allow_redirects=False,
    )
    assert r.status_code in (302, 303), r.text
    await wait_ready(app, "alice")
    (pod,) = pods_of(cluster, user="alice")
    assert pod["metadata"]["labels"]["mig-spawner/team"] == "nlp"
    options = json.loads(json.dumps(app.users["alice"].spawners[""].user_options))
    record = options.pop("mig")
    assert options == {"profile": "notebook: 1g.10gb on H100 80GB", "team": "nlp"}
    assert record["team"] == "nlp" and record["slice"] == "1g.10gb" and not record["fallback"]


async def test_a_failed_start_releases_its_reservation(hub):
    """The API refuses the pod: the spawn fails, and its slice and quota are given back."""
    spec = {"nodes": [{"name": "h", "gpu": H100, "strategy": "mixed", "mig": [["1g.10gb"]]}]}
    app, cluster = await hub(spec=spec, team_quotas={"vision": {"compute_slices": 1}})
    cluster.inject_faults(path_prefix="/api/v1/namespaces/jhub/pods", status=403, method="POST")
    await spawn(app, "bob", {"tier": "notebook"})
    spawner = app.users["bob"].spawners[""]
    for _ in range(200):
        if spawner._spawn_future is not None and spawner._spawn_future.done():
            break
        await asyncio.sleep(0.05)
    assert spawner._spawn_future.exception() is not None
    view = spawner.cluster_view()
    assert not view.state.reservations
    assert view.state.usage("vision", "bob").compute_slices == 0
    # ... so the only slice and the whole quota are free for the next try
    r = await spawn(app, "alice", {"tier": "notebook", "team": "vision"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "alice")
