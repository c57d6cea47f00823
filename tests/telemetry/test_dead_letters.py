"""The dead-letter browser through a real system (embedded NATS, a consumer that fails
one event every time): show, replay and purge through the API and the dashboard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit import browser_page, corral, wait_for

BUS = Path(__file__).parent / "bus"

MANIFEST = f"""
name: deadletters
services:
  emitter:
    app: emitter:svc
    readiness: {{http: /readyz, period: 100ms}}
    database: none
    env: {{PYTHONPATH: "{BUS}"}}
  listener:
    app: listener:svc
    readiness: {{http: /readyz, period: 100ms}}
    database: none
    env: {{PYTHONPATH: "{BUS}"}}
gateway:
  routes:
    - {{match: {{prefix: /emit}}, service: emitter}}
events:
  delivery: {{max_deliveries: 2, backoff: [100ms]}}
  topics:
    word.said:
      producers: [emitter]
      consumers: [listener]
"""


class Api:
    def __init__(self, root: Path) -> None:
        self.root = root
        status = json.loads(corral("status", "--json", cwd=root).stdout)
        self.url = str(status["api_url"])
        self.gateway = str(status["gateway_url"])
        token = (root / ".corral" / "token").read_text().strip()
        self.headers = {"authorization": f"Bearer {token}"}

    def call(self, method: str, path: str) -> httpx.Response:
        return httpx.request(method, self.url + path, headers=self.headers, timeout=30)

    def letters(self) -> dict[str, Any]:
        answer = self.call("GET", "/v1/telemetry/events")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


@pytest.fixture(scope="module")
def bus_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("deadletters")
    (root / "corral.yaml").write_text(MANIFEST)
    up = corral("up", "-d", cwd=root, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield Api(root)
    finally:
        corral("down", cwd=root, timeout=60)


def test_dead_letters_show_replay_and_purge(bus_system: Api, tmp_path: Path) -> None:
    """A refused event is a dead letter the API shows whole; replayed, it fails again
    and comes back; the dashboard shows it, and its purge (confirmed) empties the queue."""
    api = bus_system
    assert httpx.post(api.gateway + "/emit/poison", timeout=10).status_code == 200
    first = wait_for(lambda: api.letters()["recent_dead_letters"], timeout=60, what="a dead letter")
    seq = first[0]["seq"]
    shown = api.call("GET", f"/v1/telemetry/events/dead-letters/{seq}")
    assert shown.status_code == 200, shown.text
    assert "poison" in json.dumps(shown.json())
    assert api.call("GET", "/v1/telemetry/events/dead-letters/999999").status_code == 404

    replayed = api.call("POST", f"/v1/telemetry/events/dead-letters/{seq}/replay")
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["replayed"] == [seq]
    wait_for(
        lambda: any(d["seq"] != seq for d in api.letters()["recent_dead_letters"]),
        timeout=60,
        what="the replayed event failing again",
    )

    link = corral("dashboard", cwd=api.root).stdout.split()[0]
    with browser_page(link) as (page, errors):
        page.evaluate("location.hash = '#/events'")
        page.wait_for_selector("#dlq tbody tr[data-seq]", timeout=60_000)
        assert "dead letter" in (page.text_content("#state") or "")
        page.click('#dlq tbody tr[data-seq] button[data-action="show"]')
        page.wait_for_selector("#dlq-detail:not([hidden]):has-text('poison')")
        page.screenshot(path=tmp_path / "events.png", full_page=True)
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#dlq-purge")
        page.wait_for_selector("#dlq-message:has-text('purged')", timeout=60_000)
        assert not errors, errors
    assert api.letters()["dead_letters"] == 0


@pytest.mark.timeout(300)  # a rollout, a pause and a browser on a loaded machine
def test_topic_rates_and_consumer_lag_over_time(bus_system: Api, tmp_path: Path) -> None:
    """Events published while the bus is sampled show as a publish rate for the topic and
    a lag line for its consumer, in the API and drawn on the Events view."""
    api = bus_system

    def published() -> bool:
        assert httpx.post(api.gateway + "/emit/hello", timeout=10).status_code == 200
        answer = api.call("GET", "/v1/telemetry/events/history?window=3600")
        assert answer.status_code == 200, answer.text
        history = answer.json()
        rates = history["topics"].get("word.said", [])
        return any(r for r in rates) and "word.said/listener" in str(history["lag"])

    wait_for(published, timeout=90, what="a publish rate of word.said in the history")
    link = corral("dashboard", cwd=api.root).stdout.split()[0]
    with browser_page(link) as (page, errors):
        page.evaluate("location.hash = '#/events'")
        page.wait_for_selector(
            '#chart-topic-rate[data-points]:not([data-points="0"]) canvas', timeout=60_000
        )
        page.wait_for_selector("#chart-consumer-lag canvas", timeout=60_000)
        assert page.get_attribute("#updated", "class") != "bad"
        page.screenshot(path=tmp_path / "events-history.png", full_page=True)
        assert not errors, errors
