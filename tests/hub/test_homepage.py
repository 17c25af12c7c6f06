"""Borrowers know (hub/homepage.py): a server on a fallback slice is told, on the hub's home
page, the next spawn form and the figures, once its own size is free; one click restarts it
there, and nothing restarts without it. Through a real hub and, for the click, a browser."""

from __future__ import annotations

import asyncio
import json
import re
from html import unescape

import pytest
from hub_harness import BALANCED_H100, logged_in_page, pods_of, spawn, wait_ready
from jupyterhub.tests.utils import get_page, ujoin
from test_live_figures import _figures
from test_spawner import create_foreign_pod
from test_spawner_trust import settle
from traitlets.config import Config

from mig_spawner.hub.homepage import HOME_TEMPLATES, install_home_page

FREE = "a 1g.10gb slice is free (1 of 2): restart to give back the 2g.20gb"


def home_page_settings(**admins) -> dict:
    """What ``install_home_page(c)`` sets on a hub's config, for the test hub's ``extra``."""
    c = Config()
    for key, value in admins.items():
        setattr(c.JupyterHub, key, value)
    install_home_page(c)
    return {
        "JupyterHub": {
            "template_paths": c.JupyterHub.template_paths,
            "template_vars": c.JupyterHub.template_vars,
        }
    }


async def borrowing_bob(hub):
    """bob's default server on the 2g, both 1g slices taken by batch jobs."""
    app, cluster = await hub(spec=BALANCED_H100, service=True, extra=home_page_settings())
    for i in range(2):
        await create_foreign_pod(cluster, f"batch-{i}", "nvidia.com/mig-1g.10gb")
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob")
    (pod,) = pods_of(cluster, user="bob")
    assert "nvidia.com/mig-2g.20gb" in pod["spec"]["containers"][0]["resources"]["limits"]
    return app, cluster


async def free_a_1g(app, cluster):
    cluster.delete_pod("batch-0", namespace="research")
    view = app.users["bob"].spawners[""].cluster_view()
    await settle(view, lambda: "research/batch-0" not in view.state.pods)


def test_install_keeps_the_admins_templates_and_variables():
    extra = home_page_settings(template_paths=["/srv/mine"], template_vars={"org": "ACME"})
    hub = extra["JupyterHub"]
    assert hub["template_paths"] == [HOME_TEMPLATES, "/srv/mine"]
    assert hub["template_vars"]["org"] == "ACME" and callable(hub["template_vars"]["mig_give_back"])
    c = Config()
    install_home_page(c)
    install_home_page(c)  # twice (an extraConfig run again): one entry
    assert c.JupyterHub.template_paths == [HOME_TEMPLATES]


async def test_a_borrower_is_told_once_its_own_size_frees_and_nothing_restarts(hub):
    app, cluster = await borrowing_bob(hub)
    cookies = await app.login_user("bob")
    home = (await get_page("home", app, cookies=cookies)).text
    assert "Stop My Server" in home  # the hub's own page ...
    assert "mig-give-back" not in home  # ... with no notice while every 1g is taken
    data = (await _figures(app, "bob")).json()
    (borrowed,) = data["borrowers"]
    assert borrowed["server_name"] == "" and borrowed["can_give_back"] is False
    assert borrowed["message"].endswith("every 1g.10gb slice is taken (0 of 2 free)")

    await free_a_1g(app, cluster)
    raw = (await get_page("home", app, cookies=cookies)).text
    home = unescape(raw)
    assert "(1g notebook) runs on a 2g.20gb slice.</strong>" in home
    assert f"A{FREE[1:]}." in home
    assert "Restart on a 1g.10gb slice" in home
    (options,) = [json.loads(unescape(o)) for o in re.findall(r'data-options="([^"]*)"', raw)]
    assert options == {"profile": "notebook", "tier": "notebook"}
    (borrowed,) = (await _figures(app, "bob")).json()["borrowers"]
    assert borrowed["can_give_back"] is True and borrowed["message"] == FREE

    # the next spawn form (another server) says it in one line
    form = unescape((await get_page("spawn/bob/other", app, cookies=cookies)).text)
    assert (
        "Your default server (1g notebook) runs on a 2g.20gb slice. A 1g.10gb slice is free"
        " now (1 of 2): restart it from your home page to give back the 2g.20gb." in form
    )
    # only bob's own: alice sees no notice and no borrower
    alice = await app.login_user("alice")
    assert "mig-give-back" not in (await get_page("home", app, cookies=alice)).text
    assert (await _figures(app, "alice")).json()["borrowers"] == []
    # and nothing restarted by itself
    await asyncio.sleep(0.5)
    (pod,) = pods_of(cluster, user="bob")
    assert "nvidia.com/mig-2g.20gb" in pod["spec"]["containers"][0]["resources"]["limits"]
    assert app.users["bob"].spawners[""].claim.grant["slice"] == "2g.20gb"


async def test_a_broken_policy_shows_the_plain_home_page(hub, monkeypatch):
    app, cluster = await borrowing_bob(hub)
    await free_a_1g(app, cluster)
    from mig_spawner.hub import homepage

    def broken(*args):
        raise ValueError("garbled")

    monkeypatch.setattr(homepage, "borrowers", broken)
    cookies = await app.login_user("bob")
    r = await get_page("home", app, cookies=cookies)
    assert r.status_code == 200 and "mig-give-back" not in r.text


@pytest.mark.browser
async def test_one_click_restarts_the_borrower_on_its_own_size(hub):
    from playwright.async_api import async_playwright, expect

    app, cluster = await borrowing_bob(hub)
    await free_a_1g(app, cluster)
    async with async_playwright() as pw:
        browser, page, base = await logged_in_page(pw, app, "bob")
        await page.goto(ujoin(base, "home"))
        notice = page.locator(".mig-give-back")
        await expect(notice).to_contain_text(f"A{FREE[1:]}.")
        await page.click("text=Restart on a 1g.10gb slice")
        # to the progress page, which goes on to the server once it is ready
        await page.wait_for_url(re.compile(r"/(spawn-pending|user)/bob"), timeout=60_000)
        await browser.close()
    await wait_ready(app, "bob")
    (pod,) = pods_of(cluster, user="bob")
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/mig-1g.10gb" in limits and "nvidia.com/mig-2g.20gb" not in limits
    claim = app.users["bob"].spawners[""].claim
    assert claim.grant["slice"] == "1g.10gb" and not claim.grant["fallback"]
