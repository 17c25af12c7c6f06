"""The open form's live figures (hub/live.py), served by mig-spawner's hub-managed service
(hub/service.py) that a real JupyterHub starts, proxies and logs users in to."""

from __future__ import annotations

import asyncio

from hub_harness import service_url
from jupyterhub.tests.utils import AsyncSession, async_requests, get_page
from test_spawner import create_foreign_pod


def _token(app, name: str) -> str:
    return app.users[name].new_api_token()


async def _figures(app, name=None, headers=None):
    if name is not None:
        headers = {"Authorization": f"token {_token(app, name)}"}
    return await async_requests.get(
        service_url(app, "api/figures"), headers=headers or {}, allow_redirects=False
    )


async def test_figures_are_the_users_own_and_follow_the_cluster(hub):
    app, cluster = await hub(service=True)
    cookies = await app.login_user("carol")
    page = (await get_page("spawn", app, cookies=cookies)).content.decode("utf-8")
    live = f'data-mig-live="{app.base_url}services/mig/api/figures"'
    assert live in page  # where to poll
    assert live in (await get_page("spawn", app, cookies=cookies)).content.decode("utf-8")

    r = await _figures(app, "carol")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store", r.text
    data = r.json()
    assert data["known"] is True
    # carol is in nlp only: no vision-only tier, no vision figures anywhere
    assert set(data["tiers"]) == {"notebook", "training"}
    assert data["tiers"]["notebook"]["available"] == "9 of 9 free"
    assert data["tiers"]["notebook"]["quota"] == "team nlp: 0 of 4 compute slices in use"
    assert "vision" not in r.text
    assert 'data-tier="notebook"' in data["html"]  # the form as the page renders it

    # alice, in two teams, gets her team picker's labels
    alice = (await _figures(app, "alice")).json()
    assert alice["tiers"]["notebook"]["teams"] == {
        "vision": "vision (0 of 8 compute slices in use)",
        "nlp": "nlp (0 of 4 compute slices in use)",
    }
    assert "full" in alice["tiers"]

    # someone else's job takes a slice: the next answer says so, with no page load
    await create_foreign_pod(cluster, "batch-1", "nvidia.com/mig-1g.10gb")
    for _ in range(100):
        data = (await _figures(app, "carol")).json()
        if data["tiers"]["notebook"]["available"] == "8 of 9 free":
            break
        await asyncio.sleep(0.05)
    assert data["tiers"]["notebook"]["available"] == "8 of 9 free"


async def test_a_logged_in_browser_gets_its_figures_through_the_hubs_oauth(hub):
    """What the form's fetch() does: the hub's login cookie, redirects to the hub's OAuth
    and back, then the figures -- with no confirmation page."""
    app, _cluster = await hub(service=True)
    session = AsyncSession()
    session.cookies = await app.login_user("bob")
    r = await session.get(service_url(app, "api/figures"))
    assert r.status_code == 200, (r.status_code, r.url, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/json")
    assert "/oauth" in r.history[0].headers["Location"]  # it went through the hub's OAuth
    assert set(r.json()["tiers"]) == {"notebook", "training", "full"}


async def test_figures_need_the_users_own_auth(hub):
    app, _cluster = await hub(service=True)
    r = await _figures(app)  # anonymous: sent to log in, no figures
    assert r.status_code in (302, 403), r.status_code
    assert "vision" not in r.text and "of 9 free" not in r.text
    if r.status_code == 302:
        assert "/hub/" in r.headers["Location"]
    r = await _figures(app, headers={"Authorization": "token not-a-token"})
    assert r.status_code in (302, 403)
    assert "of 9 free" not in r.text


async def test_without_the_service_the_form_polls_nothing(hub):
    app, _cluster = await hub(service_name="")
    page = (await get_page("spawn", app, cookies=await app.login_user("bob"))).content
    assert b'data-mig-live=""' in page  # the form re-reads its own page instead
