"""The kept store outlives `corral down`: a trace and its log lines are found from the
file while the system is down (`corral traces`, `corral logs --trace`), and through the
API after the next `corral up`, with the metric history of the first run."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx
import pytest
from telemetry_system import APPS, MANIFEST

from testkit import corral, wait_for


def _get(api: str, token: str, path: str) -> httpx.Response:
    return httpx.get(api + path, headers={"authorization": f"Bearer {token}"}, timeout=10)


def _requests(api: str, token: str) -> int:
    """Requests `back` answered in the last hour, from the kept history."""
    answer = _get(api, token, "/v1/telemetry/services/back/history?window=3600&step=60")
    assert answer.status_code == 200, answer.text
    return sum(n for n in answer.json()["requests"] if n is not None)


@pytest.mark.timeout(300)  # two `corral up`s, two CLI reads of the store: under load, >120 s
def test_a_trace_survives_down_and_up(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Kept across runs: searched from the file while down, served again after up."""
    root: Path = tmp_path_factory.mktemp("kept")
    (root / "corral.yaml").write_text(MANIFEST.format(apps=APPS))
    up = corral("up", "-d", cwd=root, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        status = json.loads(corral("status", "--json", cwd=root).stdout)
        token = (root / ".corral" / "token").read_text().strip()
        trace_id = secrets.token_hex(16)
        headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        response = httpx.get(status["gateway_url"] + "/chain", headers=headers, timeout=10)
        assert response.status_code == 200
        wait_for(
            lambda: (
                (found := _get(status["api_url"], token, f"/v1/traces/{trace_id}")).status_code
                == 200
                and found.json()["logs"] >= 2
                and {"front", "back"} <= set(found.json()["services"])
            ),
            timeout=90,  # a loaded machine: the batches of three processes
            what="the trace and its lines in the store",
        )
        wait_for(
            lambda: _requests(status["api_url"], token) >= 1,
            timeout=90,
            what="the request in the metric history",
        )
        before = _requests(status["api_url"], token)
    finally:
        down = corral("down", cwd=root, timeout=60)
    assert down.returncode == 0, down.stderr

    shown = corral("traces", trace_id, "--json", cwd=root, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert {s["service"] for s in json.loads(shown.stdout)["spans"]} >= {"front", "back"}
    lines = corral("logs", "--trace", trace_id, cwd=root, timeout=120)
    assert lines.returncode == 0, lines.stderr
    assert "front-" in lines.stdout
    assert "back-" in lines.stdout

    up = corral("up", "-d", cwd=root, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        status = json.loads(corral("status", "--json", cwd=root).stdout)
        token = (root / ".corral" / "token").read_text().strip()
        again = _get(status["api_url"], token, f"/v1/traces/{trace_id}")
        assert again.status_code == 200, again.text
        assert again.json()["span_count"] >= 3
        # The first run's requests are still in the history the dashboard draws.
        assert _requests(status["api_url"], token) >= before
    finally:
        corral("down", cwd=root, timeout=60)
