"""Reclaim through a real JupyterHub: an idle server is warned, then stopped, only for a
spawn waiting in line (issue 23, items 3-4), on the emulator and the real control plane.

The cluster has two 1g.10gb slices and the tier ``notebook`` does not fall back: u1 and
u2 fill it, u3 waits. u2 stays active (its activity reaches the hub through the REST API,
as a single-user server reports it); u1 does not, so after ``idle_after`` (4 s here) it
is idle by the hub's signal. The hub stops it through its own REST API with the mig
service's token (role ``delete:servers``: hub/service.py's roles()).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
import time

import aiohttp
import pytest
from hub_harness import pods_of, spawn_at_once, wait_ready
from jupyterhub.tests.utils import api_request, auth_header, get_page, public_url, ujoin
from test_homepage import home_page_settings
from test_metrics_adminpage import mig_page, scrape
from test_waiting import ONE_H100, TEAMS, fill, until

pytestmark = pytest.mark.hub

RULES = {"idle_after": 4, "grace": 6}
TIERS = {
    "notebook": {
        "display_name": "1g notebook",
        "compute_slices": 1,
        "fallback": False,
        "max_wait": 120,
        "reclaim": RULES,
    },
}


async def reclaim_hub(plane_hub, **mig):
    settings = dict(
        tiers=TIERS,
        teams=TEAMS,
        team_quotas={"vision": {"compute_slices": 7}},
        reclaim_interval=0.5,
        service=True,
        extra=home_page_settings(),
    )
    settings.update(mig)
    return await plane_hub(spec=ONE_H100, **settings)


async def keep_active(app, user: str, stop: asyncio.Event) -> None:
    """Report ``user``'s default server active every half second, as its single-user
    server would (``POST /hub/api/users/{name}/activity``; aiohttp: ``api_request`` is
    serial, so a page read would wait behind it)."""
    headers = {**auth_header(app.db, "admin"), "Sec-Fetch-Mode": "cors"}
    url = ujoin(public_url(app, path="hub"), "api", "users", user, "activity")
    async with aiohttp.ClientSession(headers=headers) as http:
        while not stop.is_set():
            now = datetime.datetime.now(datetime.timezone.utc).isoformat()
            body = {"last_activity": now, "servers": {"": {"last_activity": now}}}
            async with http.post(url, json=body) as r:
                assert r.status in (200, 204), await r.text()
            await asyncio.sleep(0.5)


async def start_in_background(app, user: str) -> asyncio.Future:
    """POST ``user``'s server without holding the test client's one thread (the hub may
    answer only once the server has started: ``slow_spawn_timeout``); its (status, body)."""
    return asyncio.ensure_future(spawn_at_once(app, [user], {"tier": "notebook"}))


def reclaimer(app):
    return app.users["u1"].spawners[""].cluster_view().reclaimer


async def home_page(app, user: str, cookies: dict | None = None) -> str:
    r = await get_page("home", app, cookies=cookies or await app.login_user(user))
    assert r.status_code == 200, r.text
    return r.text


def records(caplog, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(word)]


async def test_an_idle_server_is_warned_then_stopped_for_a_waiting_spawn(plane_hub, caplog):
    caplog.set_level(logging.INFO)
    app, cluster = await reclaim_hub(plane_hub)
    stop_activity = asyncio.Event()
    await fill(app)
    active = asyncio.ensure_future(keep_active(app, "u2", stop_activity))
    try:
        # nobody waits: u1, idle, is left alone, however many passes run
        await until(lambda: reclaimer(app).passes >= 4, 30, "four passes")
        await asyncio.sleep(RULES["idle_after"] + 1)
        await until(lambda: reclaimer(app).candidates.get(_key(cluster, "u1")), 10, "u1 read")
        assert reclaimer(app).warnings == {}
        assert "idle" in reclaimer(app).candidates[_key(cluster, "u1")].shown
        # the admins' page (the service: the hub's activity through the REST API)
        page = await mig_page(app, "admin")
        assert page.status_code == 200, page.text
        rows = re.findall(
            r'class="mig-idle-server[^"]*" data-user="(\w+)" data-idle="(\w+)"', page.text
        )
        assert rows == [("u1", "yes"), ("u2", "no")]  # the longest idle first
        assert "after 4 s idle, for a waiting spawn" in page.text

        cookies = {u: await app.login_user(u) for u in ("u1", "admin", "u2")}  # slow: now
        stopped = ("mig_spawner_reclaimed_total", (("reason", "idle"),))
        before = (await scrape(app, cookies["admin"])).get(stopped, 0)  # one registry a process
        # the hub may answer this POST only once u3 has started (slow_spawn_timeout)
        started = await start_in_background(app, "u3")
        await until(lambda: reclaimer(app).warnings, 20, "a warning")
        (warned,) = reclaimer(app).warnings.values()
        assert warned.user == "u1" and warned.reason == "idle"
        warned_at = time.time()
        page = await home_page(app, "u1", cookies["u1"])
        assert "mig-reclaim-warning" in page and "unless you use it" in page
        assert "mig-reclaim-warning" not in await home_page(app, "u2", cookies["u2"])
        assert pods_of(cluster, user="u1")  # not yet stopped

        assert (await started)[0][1] in (201, 202)
        await wait_ready(app, "u3", timeout=90)  # u1 stopped after the grace, u3 admitted
        assert time.time() - warned_at >= RULES["grace"] - 0.6  # not before its grace
        await until(lambda: not app.users["u1"].spawners[""].active, 20, "u1 stopped")
        assert app.users["u2"].spawners[""].ready  # active: never chosen
        # the stop's line, metric and notice follow the hub's answer to the reclaimer's
        # DELETE, which can come after the server is already inactive
        await until(lambda: records(caplog, "reclaim stop"), 10, "the reclaim stop line")
        (line,) = records(caplog, "reclaim stop")
        assert "user=u1" in line and "reason=idle" in line and "for u3's 1g notebook" in line
        page = await home_page(app, "u1", cookies["u1"])
        assert "mig-reclaim-notice" in page and "was stopped at" in page
        assert (await scrape(app, cookies["admin"]))[stopped] == before + 1
        # the notice stays until u1 starts again
        assert (await spawn_at_once(app, ["u1"], {"tier": "notebook"}))[0][1] == 202  # waits
        assert reclaimer(app).for_user("u1")["notices"] == []
        r = await api_request(app, "users", "u1", "server", method="delete")
        assert r.status_code in (202, 204), r.text
        assert reclaimer(app).for_user("u1")["notices"] == []
    finally:
        stop_activity.set()
        await active


async def test_dry_run_logs_what_it_would_stop_and_stops_nothing(hub, caplog):
    caplog.set_level(logging.INFO)
    # the emulator alone: the stop path it leaves out is the main test's, on both planes
    app, _ = await reclaim_hub(hub, reclaim_dry_run=True)
    await fill(app)
    await asyncio.sleep(RULES["idle_after"])
    started = await start_in_background(app, "u3")
    await until(lambda: records(caplog, "reclaim would stop (dry run)"), 30, "a would-stop")
    assert app.users["u1"].spawners[""].ready and app.users["u2"].spawners[""].ready
    assert not app.users["u3"].spawners[""].ready  # still waiting: nothing was freed
    assert records(caplog, "reclaim stop") == []
    assert "mig-reclaim-warning" not in await home_page(app, "u1")  # not shown in a dry run
    assert (await started)[0][1] == 202
    await api_request(app, "users", "u3", "server", method="delete")


async def test_without_a_token_a_due_stop_is_one_error_and_nothing_stops(hub, caplog):
    caplog.set_level(logging.INFO)
    app, _ = await reclaim_hub(hub, service=False, hub_api_token="")
    await fill(app)
    await asyncio.sleep(RULES["idle_after"])
    started = await start_in_background(app, "u3")
    await until(lambda: records(caplog, "reclaim cannot stop"), 30, "the error")
    assert "hub_api_token is not set" in records(caplog, "reclaim cannot stop")[0]
    assert app.users["u1"].spawners[""].ready
    assert reclaimer(app).warnings  # still due: a later pass tries again
    assert (await started)[0][1] == 202
    await api_request(app, "users", "u3", "server", method="delete")


def _key(cluster, user: str) -> str:
    (pod,) = pods_of(cluster, user=user)
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


async def test_the_gpu_signal_from_the_real_prometheus_and_its_outage(
    hub, dcgm_exporter, prometheus, caplog
):
    """u1 and u2 are both idle by the hub; DCGM (the real Prometheus scraping the test
    exporter) says u1's GPU is busy: only u2 is warned. Prometheus then goes down: the
    warning is withdrawn (not known idle is not idle) and nothing is stopped."""
    caplog.set_level(logging.INFO)
    app, _ = await reclaim_hub(
        hub,
        service=False,
        prometheus_url=prometheus.url,
        prometheus_scrape_interval=1.0,
        hub_api_token="unused",  # a stop would fail loudly: none may come
    )
    await fill(app)
    dcgm_exporter.set("jhub", "jupyter-u1", engine_active=0.6)
    dcgm_exporter.set("jhub", "jupyter-u2", engine_active=0.0)
    await asyncio.sleep(RULES["idle_after"] + 1)  # both idle by the hub; the GPU window full
    started = await start_in_background(app, "u3")
    await until(lambda: reclaimer(app).warnings, 20, "a warning")
    (warned,) = reclaimer(app).warnings.values()
    assert warned.user == "u2" and warned.why.endswith(", GPU 0 %")
    busy = reclaimer(app).candidates["jhub/jupyter-u1"]
    assert busy.idleness.reason == "GPU busy (up to 60 %)"
    home = await home_page(app, "u1")
    assert "GPU 60 %" in home  # the user sees their server's idleness
    prometheus.stop()
    await until(lambda: not reclaimer(app).warnings, 20, "the warning withdrawn")
    (line,) = records(caplog, "reclaim withdraw")
    assert "user=u2" in line and "GPU activity unknown (Prometheus at" in line
    await asyncio.sleep(RULES["grace"] + 1)
    assert records(caplog, "reclaim stop") == [] and records(caplog, "reclaim could not") == []
    assert app.users["u1"].spawners[""].ready and app.users["u2"].spawners[""].ready
    assert (await started)[0][1] == 202  # u3 still waits
    await api_request(app, "users", "u3", "server", method="delete")


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("gpu_idle_below", 5, "is a ratio of engine activity (0.05 = 5 %)"),
        ("gpu_idle_below", 0, "above 0 and at most 1, not 0"),
        ("reclaim_interval", 0, "MIGSpawner.reclaim_interval must be above 0 seconds"),
        ("prometheus_scrape_interval", -1, "prometheus_scrape_interval must be above 0"),
    ],
)
def test_settings_out_of_range_are_refused_with_their_name(setting, value, said):
    """A percent where a ratio goes would call every GPU idle; an interval of 0 would spin."""
    from traitlets import TraitError

    from mig_spawner.hub.reclaim import ReclaimSettings

    with pytest.raises(TraitError, match=re.escape(said)):
        ReclaimSettings(**{setting: value})
    assert getattr(ReclaimSettings(**{setting: 0.5}), setting) == 0.5
