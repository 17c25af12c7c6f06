"""The spawn form's states in a real browser against a real hub: nothing can start.

With every option refused (team vision's quota allows no server), Start is disabled and
says why, and every radio is disabled with its reason at full contrast.
"""

from __future__ import annotations

import pytest
from hub_harness import logged_in_page
from jupyterhub.tests.utils import ujoin
from playwright.async_api import async_playwright, expect

pytestmark = pytest.mark.browser


async def test_start_is_disabled_with_the_reason_when_nothing_can_start(hub):
    app, _ = await hub(team_quotas={"vision": {"servers": 0}, "nlp": {"compute_slices": 4}})
    async with async_playwright() as pw:
        browser, page, base = await logged_in_page(pw, app, "bob")
        await page.goto(ujoin(base, "spawn"))
        radios = page.locator("#kubespawner-profiles-list input[type=radio]")
        await expect(radios).to_have_count(3)
        for i in range(3):
            await expect(radios.nth(i)).to_be_disabled()
        start = page.locator("#spawn_form [type=submit]")
        await expect(start).to_be_disabled()
        nothing = page.locator("#mig-nothing")
        await expect(nothing).to_be_visible()
        await expect(nothing).to_have_text(
            "Nothing can start right now: each option above says why."
        )
        assert await start.get_attribute("aria-describedby") == "mig-nothing"
        reason = page.locator('label[data-tier="notebook"] .mig-reason')
        await expect(reason).to_contain_text(
            "more than the whole of team vision's GPU quota (0 servers)"
        )
        await expect(reason).to_have_css("color", "rgb(139, 26, 26)")
        await browser.close()
