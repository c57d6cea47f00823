"""The dashboard's config, chaos and metric-history views in a real Chromium (Debian's),
against a running system: what a person looks for in each, a screenshot of each saved in
the test's tmp dir."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page
from telemetry_system import System

from testkit import browser_page, corral, wait_for


def _send(system: System, method: str, path: str, body: Any) -> Any:
    response = httpx.request(
        method,
        system.api + path,
        json=body,
        headers={"authorization": f"Bearer {system.token}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _no_error_banner(page: Page) -> None:
    assert page.get_attribute("#updated", "class") != "bad", page.text_content("#updated")


def _cells_fit(page: Page, selector: str) -> bool:
    """No cell's text spills out of its table's box."""
    return bool(
        page.evaluate(
            """(selector) => {
              const table = document.querySelector(selector).getBoundingClientRect();
              return [...document.querySelectorAll(`${selector} td`)].every((td) => {
                const b = td.getBoundingClientRect();
                return b.left >= table.left - 1 && b.right <= table.right + 1;
              });
            }""",
            selector,
        )
    )


@pytest.mark.timeout(300)  # a rollout, a pause and a browser on a loaded machine
def test_config_chaos_and_history_views(system: System, tmp_path: Path) -> None:
    """After traffic, a configuration change, a pause and a reported run: the config view
    lists the versions with author and message, the change's diff and each instance's
    version; the chaos view shows the active pause, stops it after confirming, and lists
    the run's verdict; the service view draws its kept history. No view shows an error."""
    for _ in range(5):
        assert httpx.get(system.gateway + "/chain", timeout=10).status_code == 200
    # In the kept rollups before the configuration change below may restart back's
    # instances: a counter the scraper has not read yet would go with them.
    history = "/v1/telemetry/services/back/history?window=3600&step=60"
    wait_for(
        lambda: any(_send(system, "GET", history, None)["requests"]),
        timeout=90,
        every=1.0,
        what="back's requests in the kept history",
    )
    outcome = _send(
        system,
        "POST",
        "/v1/config/services/back/set",
        {"values": {"COLOUR": "blue"}, "new": True, "author": "ada", "message": "try blue"},
    )
    version = outcome["version"]
    pause = _send(system, "POST", "/v1/chaos/pause", {"target": "back", "seconds": 120})
    now = time.time()
    run_id = f"run-{int(now * 1000)}"
    _send(
        system,
        "POST",
        "/v1/chaos/runs",
        {
            "id": run_id,
            "title": "back survives a pause",
            "file": "chaos/pause.yaml",
            "started_at": now - 5,
            "ended_at": now,
            "verdict": "not held",
            "reason": "2 of 10 checks failed during the method",
            "during_checks": 10,
            "during_failed": 2,
        },
    )

    link = corral("dashboard", cwd=system.root)
    url = link.stdout.split()[0]
    with browser_page(url, viewport={"width": 1440, "height": 1000}) as (page, errors):
        page.wait_for_selector('#instances tr[data-instance="front-1"]')

        # Config: versions with author and message, the diff of the change, instances.
        page.click('nav a[data-view="config"]')
        row = f'#config-versions tr[data-version="{version}"]'
        page.wait_for_selector(row, timeout=30_000)
        assert "ada" in (page.text_content(row) or "")
        assert "try blue" in (page.text_content(row) or "")
        page.click(row)
        page.wait_for_selector("#config-diff tbody tr:has-text('COLOUR')", timeout=30_000)
        assert "blue" in (page.text_content("#config-diff tbody") or "")
        page.wait_for_selector('#config-instances tr[data-instance="front-1"]', timeout=30_000)
        for record in system.get("/v1/status")["instances"]:
            if record["service"] == "back":
                found = f'#config-instances tr[data-instance="{record["instance"]}"]'
                page.wait_for_selector(found, timeout=30_000)
        assert _cells_fit(page, "#config-versions")
        assert _cells_fit(page, "#config-instances")
        _no_error_banner(page)
        page.screenshot(path=tmp_path / "config.png", full_page=True)

        # Chaos: the active pause, stopped from the page after confirming; the run.
        page.click('nav a[data-view="chaos"]')
        active = f'#chaos-active tr[data-experiment="{pause["id"]}"]'
        page.wait_for_selector(active, timeout=30_000)
        assert pause["target"] in (page.text_content(active) or "")
        run = f'#chaos-runs tr[data-run="{run_id}"]'
        page.wait_for_selector(run, timeout=30_000)
        assert "not held" in (page.text_content(run) or "")
        assert _cells_fit(page, "#chaos-runs")
        _no_error_banner(page)
        page.screenshot(path=tmp_path / "chaos.png", full_page=True)
        dismissed: list[str] = []
        page.once("dialog", lambda dialog: (dismissed.append(dialog.message), dialog.dismiss()))
        page.click(f'{active} button[data-action="stop"]')
        wait_for(lambda: dismissed, timeout=10, what="the confirmation")
        assert _send(system, "GET", "/v1/chaos", None)["active"]  # not stopped: dismissed
        page.once("dialog", lambda dialog: dialog.accept())
        page.click(f'{active} button[data-action="stop"]')
        page.wait_for_selector(f'#chaos-recent tr[data-experiment="{pause["id"]}"]', timeout=30_000)
        page.wait_for_selector("#chaos-active-empty:not([hidden])", timeout=30_000)
        assert not _send(system, "GET", "/v1/chaos", None)["active"]
        page.click(run)
        page.wait_for_selector("#chaos-run-detail:not([hidden])")
        assert "2 of 10 checks failed" in (page.text_content("#chaos-run-detail") or "")
        page.screenshot(path=tmp_path / "chaos-stopped.png", full_page=True)

        # History: the service's kept rollups drawn (requests made above).
        page.evaluate("location.hash = '#/services/back'")
        page.wait_for_selector(
            '#chart-hist-rate[data-points]:not([data-points="0"]) canvas', timeout=90_000
        )
        page.wait_for_selector(
            '#chart-hist-p95[data-points]:not([data-points="0"]) canvas', timeout=30_000
        )
        _no_error_banner(page)
        page.screenshot(path=tmp_path / "history.png", full_page=True)
        assert not errors, errors
