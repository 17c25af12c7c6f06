"""The open form's live figures endpoint (hub/live.py) through a real JupyterHub."""

from __future__ import annotations

import asyncio

from jupyterhub.tests.utils import async_requests, get_page, public_host, ujoin
from test_spawn import create_foreign_pod


async def _figures(app, cookies=None, headers=None):
    url = ujoin(public_host(app), app.hub.base_url, "api/mig/figures")
    return await async_requests.get(url, cookies=cookies, headers=headers or {})


async def test_figures_are_the_users_own_and_follow_the_cluster(hub):
    app, cluster = await hub()
    cookies = await app.login_user("carol")
    page = (await get_page("spawn", app, cookies=cookies)).content.decode("utf-8")
    assert f'data-mig-live="{app.hub.base_url}api/mig/figures"' in page  # where to poll
    again = (await get_page("spawn", app, cookies=cookies)).content.decode("utf-8")
    assert f'data-mig-live="{app.hub.base_url}api/mig/figures"' in again  # and every time

    r = await _figures(app, cookies)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    data = r.json()
    assert data["known"] is True
    # carol is in nlp only: no vision-only tier, no vision figures anywhere
    assert set(data["tiers"]) == {"notebook", "training"}
    assert data["tiers"]["notebook"]["available"] == "9 of 9 free"
    assert data["tiers"]["notebook"]["quota"] == "team nlp: 0 of 4 compute slices in use"
    assert "vision" not in r.text

    # alice, in two teams, gets her team picker's labels
    alice = (await _figures(app, await app.login_user("alice"))).json()
    assert alice["tiers"]["notebook"]["teams"] == {
        "vision": "vision (0 of 8 compute slices in use)",
        "nlp": "nlp (0 of 4 compute slices in use)",
    }
    assert "full" in alice["tiers"]
    # every user's spawner shares one Policy, so the core's per-version caches are shared
    assert app.users["alice"].spawner.policy is app.users["carol"].spawner.policy

    # someone else's job takes a slice: the next answer says so, with no page load
    await create_foreign_pod(cluster, "batch-1", "nvidia.com/mig-1g.10gb")
    for _ in range(100):
        data = (await _figures(app, cookies)).json()
        if data["tiers"]["notebook"]["available"] == "8 of 9 free":
            break
        await asyncio.sleep(0.05)
    assert data["tiers"]["notebook"]["available"] == "8 of 9 free"


async def test_figures_need_the_users_own_auth(hub):
    app, _cluster = await hub()
    # the route is added when a form is first rendered (that is when anyone can poll it)
    assert (await get_page("spawn", app, cookies=await app.login_user("bob"))).status_code == 200
    r = await _figures(app)
    assert r.status_code == 403
    assert "vision" not in r.text and "of 9 free" not in r.text
    r = await _figures(app, headers={"Authorization": "token not-a-token"})
    assert r.status_code == 403
