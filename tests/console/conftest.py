"""Fixtures for the console's browser tests: Debian's chromium driven by Playwright
(headless, found by its path: nothing downloads a browser), a server with the
console on a loopback port, and page screenshots written to .artifacts/console/."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.conftest import ROOT, MakeTeam
from tests.helpers.security import Team
from tests.test_approvals import set_approval_rules

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / ".artifacts" / "console"
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("Debian's chromium is missing: run `make chromium` (apt-get install chromium)")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(10_000)
    yield ctx
    await ctx.close()


class ConsoleTeam:
    """A server with the test principals and the console; ``url(path)`` on the console."""

    def __init__(self, team: Team) -> None:
        self.team = team
        console = team.running.server.console
        assert console is not None
        self.base = f"http://127.0.0.1:{console.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def __getitem__(self, principal: str) -> Any:
        return self.team[principal]


@pytest.fixture
async def console_team(make_team: MakeTeam, policy_dir: Path) -> ConsoleTeam:
    # One approver is enough for a transfer here (the shipped rule asks for two).
    set_approval_rules(policy_dir, transfer_funds={"approvals_required": 1})
    return ConsoleTeam(await make_team(console_listen="127.0.0.1:0"))


async def sign_in(page: Page, base: str, token: str) -> None:
    await page.goto(base + "/signin")
    await page.get_by_label("Your Interlock token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


async def screenshots(page: Page, name: str) -> None:
    """The page as it is, at 1280x800 and at a phone's width (full page)."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    for label, (width, height) in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": height})
        await page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    await page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["desktop"], strict=True)))  # type: ignore[arg-type]
