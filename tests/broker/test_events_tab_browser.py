"""The dashboard's Events tab on a fresh system, in a real browser (Chromium)."""

from __future__ import annotations

import tempfile

import pytest
from playwright.sync_api import sync_playwright

from broker.conftest import BusSystem, corral

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_events_tab_of_a_fresh_system_shows_topics_and_no_error(bus_system: BusSystem) -> None:
    """Before any event or dead letter exists, the Events tab lists the topic with its
    consumer, counts 0 dead letters and shows no error banner."""
    link = corral("dashboard", cwd=bus_system.root)
    assert link.returncode == 0, link.stderr
    url = link.stdout.split()[0]
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            # Headless, and Playwright's own flags (no background networking, no sync...).
            profile,
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox"],
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            page.evaluate("location.hash = '#/events'")
            page.wait_for_selector("#topics tbody tr:has-text('thing.happened')", timeout=30_000)
            page.wait_for_selector("#topics tbody tr:has-text('consumer')", timeout=30_000)
            assert page.locator("#dlq-count").inner_text() == "0"
            banner = page.locator("#events-message")
            assert banner.is_hidden(), banner.inner_text()
            assert not errors, errors
        finally:
            browser.close()
