"""2i2c's jupyterhub-fancy-profiles (0.7.0) on a hub with tiers beside the admin's profiles.

fancy-profiles replaces KubeSpawner's form template (``setup_ui`` sets
``additional_profile_form_template_paths``): its ``form.html`` writes ``profile_list`` as
JSON into the page and a React app draws the form from it. MIGSpawner notices an admin's
own template and renders through KubeSpawner's own ``_render_options_form`` with the
combined list, so fancy-profiles gets KubeSpawner-shaped profiles (the admin's, then the
tiers, each with the ``team`` option where needed). Its app draws them and their choices;
it ignores the ``mig`` key, so it shows no live figures and does not disable a full tier:
a refused start is told by start() with the same message the default form would show.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jupyterhub_fancy_profiles
import pytest
from hub_harness import CHROMIUM
from jupyterhub.tests.utils import get_page
from playwright.async_api import async_playwright
from test_spawner_profiles import PROFILES

STATIC = Path(jupyterhub_fancy_profiles.__file__).parent / "static"


async def test_fancy_profiles_gets_the_combined_list_and_draws_it(hub):
    app, _ = await hub(
        extra={
            "KubeSpawner": {
                "profile_list": PROFILES,
                "additional_profile_form_template_paths": jupyterhub_fancy_profiles.TEMPLATE_PATHS,
            }
        }
    )
    cookies = await app.login_user("alice")
    html = (await get_page("spawn", app, cookies=cookies)).content.decode("utf-8")
    assert "fancy-profiles/static/dist/form.js" in html
    data = json.loads(re.search(r"window\.profileList = (.*?);\n", html).group(1))
    assert [p["slug"] for p in data] == ["cpu", "gpu", "training", "full"]
    gpu = data[1]
    assert list(gpu["profile_options"]["image"]["choices"]) == ["pytorch", "r"]
    assert list(gpu["profile_options"]["team"]["choices"]) == ["vision", "nlp"]
    assert gpu["mig"]["available"].endswith("free")  # there, but fancy-profiles ignores it

    # Its React app, served from the package's own static files, draws that list.
    form = html[html.index("<script>\n  /* Pass the entire") : html.index("</form>")]
    page_html = f"<html><body><form id='spawn_form'>{form}</form></body></html>"

    async def serve(route):
        path = route.request.url.split("/fancy-profiles/static/", 1)
        if len(path) == 2 and (STATIC / path[1]).is_file():
            await route.fulfill(path=str(STATIC / path[1]))
        else:
            await route.fulfill(body=page_html, content_type="text/html")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page()
        await page.route("**/*", serve)
        await page.goto("http://127.0.0.1:9/hub/spawn")  # answered by serve(), never sent
        body = page.locator("#form")
        for name in ("CPU only", "GPU notebook", "3g training"):
            await body.get_by_text(name, exact=False).first.wait_for(timeout=20_000)
        await page.screenshot(path=str(_artifacts() / "fancy-profiles.png"), full_page=True)
        await browser.close()


def _artifacts() -> Path:
    out = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


pytestmark = pytest.mark.browser
