"""The ops console in headless Chromium on the real system: the owner signs in, sees
a pricing run's proposal in the inbox, approves it, watches the run complete on its
live timeline and opens its trace. Screenshots go to tests/artifacts/ (git-ignored).

Chromium is Debian's `chromium` package, driven by Playwright for Python through
`executable_path` (Playwright's own browser download is never used)."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stayops_infra.scenario import OrgHandle, PricingClient
from stayops_infra.system import LocalSystem

pytestmark = pytest.mark.stack

BY_OWNER = 0.0  # every change reaches the owner, who decides
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RUN_TIMEOUT_MS = 180_000


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium); the console's browser test needs it")
    playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is a dev dependency: uv sync")
    async with playwright_api.async_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield launched
        finally:
            await launched.close()


async def test_the_owner_approves_a_proposal_in_the_console_and_follows_the_run_to_its_trace(
    system: LocalSystem, stack: Any, pricing: PricingClient, solo_org: dict[str, Any], tmp_path: Path,
    browser: Any,
) -> None:
    org = OrgHandle.from_seed(solo_org)
    console_url = await system.start_console(tmp_path / "orgs.json", stack.keys.private_key)
    run_id = await pricing.start_run(org, threshold_pct=BY_OWNER, monitor_days=0)
    decision = await pricing.decision_task(org, run_id, timeout_s=180)
    nights = await pricing.proposal_of(org, decision)
    ARTIFACTS.mkdir(exist_ok=True)

    laptop = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await laptop.new_page()
    await page.goto(f"{console_url}/inbox")
    assert "/sign-in" in page.url, "signed out: the console asks who you are"
    await page.get_by_role("button", name="Sign in as Owner").click()
    await page.wait_for_url(re.compile(r"/inbox$"))

    section = page.get_by_role("region", name=re.compile(r"^Decision: ")).filter(
        has=page.locator(f'a[href="/runs/{run_id}"]'))
    table = section.get_by_role("table")
    await table.wait_for()
    assert await table.locator("tbody tr").count() == len(nights), "one row per night of the proposal"
    headers = [h.strip() for h in await table.locator("thead th").all_inner_texts()]
    assert headers[:7] == ["Listing", "Date", "Current", "Proposed", "Change", "Confidence", "Factors"]
    first_row = await table.locator("tbody tr").first.inner_text()
    assert "%" in first_row and re.search(r"\d+\.\d\d", first_row), first_row
    await page.screenshot(path=str(ARTIFACTS / "console-inbox.png"), full_page=False)
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.textContent.trim()") == "Skip to content"

    # The run's page, opened while the run waits for the owner, is never reloaded:
    # its timeline refreshes itself every 2 s until the run is over.
    watching = await laptop.new_page()
    await watching.goto(f"{console_url}/runs/{run_id}")
    status = watching.get_by_test_id("run-status")
    assert await status.inner_text() != "completed"
    assert await watching.locator("#timeline[data-live]").count() == 1

    await section.get_by_role("button", name="Approve", exact=True).click()
    await page.wait_for_url(re.compile(r"/inbox\?done="))
    assert await page.get_by_text("Decision sent").is_visible()

    await watching.wait_for_function(
        "() => document.querySelector('[data-testid=run-status]').textContent.trim() === 'completed'",
        timeout=RUN_TIMEOUT_MS)
    assert await watching.locator("#timeline[data-live]").count() == 0, "a finished run stops polling"
    page = watching
    timeline = await page.locator("ol.timeline").inner_text()
    assert "person" in timeline and "Owner" in timeline, "the owner's approval is on the timeline"
    assert "AI agent" in timeline, "so is the AI Revenue Manager's analysis"
    await page.screenshot(path=str(ARTIFACTS / "console-run.png"), full_page=True)

    await page.get_by_role("link", name="Open its trace").click()
    tree = page.get_by_role("list", name="Causal tree")
    await tree.wait_for()
    picture = await tree.inner_text()
    for kind in ("workflow-service", "task-service", "agent-service", "automation-service", "pricing.approved",
                 "price.updated"):
        assert kind in picture, f"{kind} missing from the trace:\n{picture}"
    await page.screenshot(path=str(ARTIFACTS / "console-trace.png"), full_page=True)

    handheld = await browser.new_context(viewport={"width": 390, "height": 844})
    await handheld.add_cookies(await laptop.cookies())
    phone = await handheld.new_page()
    await phone.goto(f"{console_url}/runs/{run_id}")
    width = await phone.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"the run page fits a phone's width ({width}px)"
    await phone.screenshot(path=str(ARTIFACTS / "console-run-phone.png"), full_page=False)
