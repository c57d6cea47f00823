"""The dashboard's Events tab on a fresh system, in a real browser (Chromium)."""

from __future__ import annotations

import pytest

from broker.conftest import BusSystem, corral
from testkit import browser_page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_events_tab_of_a_fresh_system_shows_topics_and_no_error(bus_system: BusSystem) -> None:
    """Before any event or dead letter exists, the Events tab lists the topic with its
    consumer, counts 0 dead letters and shows no error banner."""
    link = corral("dashboard", cwd=bus_system.root)
    assert link.returncode == 0, link.stderr
    url = link.stdout.split()[0]
    with browser_page(url) as (page, errors):
        page.evaluate("location.hash = '#/events'")
        page.wait_for_selector("#topics tbody tr:has-text('thing.happened')", timeout=30_000)
        page.wait_for_selector("#topics tbody tr:has-text('consumer')", timeout=30_000)
        assert page.locator("#dlq-count").inner_text() == "0"
        banner = page.locator("#events-message")
        assert banner.is_hidden(), banner.inner_text()
        assert not errors, errors
