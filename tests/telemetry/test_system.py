"""Telemetry of a real running system (tests/telemetry/conftest.py): the scraper's
summaries against known requests, traces through the real OTLP exporter, the browser
login, a real Prometheus reading the target file, and the dashboard in a real browser."""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from telemetry_system import System

from testkit import browser_page, corral, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FAST, SLOW, FAILED = 60, 3, 2


def _route(summary: dict[str, Any], service: str, route: str) -> dict[str, Any] | None:
    for entry in summary["services"]:
        if entry["service"] == service:
            return next((r for r in entry["routes"] if r["route"] == route), None)
    return None


def test_summary_counts_requests_and_places_quantiles_by_bucket(system: System) -> None:
    """Every request is counted once across both replicas, 5xx are errors, and p50/p95
    fall among the 60 fast requests while p99 falls in the bucket of the 3 that slept
    1.1 s (asyncio.sleep never returns early, so their bucket is known)."""
    with httpx.Client(base_url=system.gateway, timeout=10) as gw:
        for _ in range(FAST):
            assert gw.get("/sleep/0").status_code == 200
        for _ in range(SLOW):
            assert gw.get("/sleep/1100").status_code == 200
        for _ in range(FAILED):
            assert gw.get("/fail").status_code == 503

    def counted() -> dict[str, Any] | None:
        summary = system.get("/v1/telemetry/summary", window=900)
        sleep = _route(summary, "back", "/sleep/{ms}")
        fail = _route(summary, "back", "/fail")
        done = sleep and fail and sleep["requests"] == FAST + SLOW and fail["requests"] == FAILED
        return summary if done else None

    summary = wait_for(counted, timeout=30, what="the scraper to count every request")
    sleep = _route(summary, "back", "/sleep/{ms}")
    fail = _route(summary, "back", "/fail")
    assert sleep is not None
    assert fail is not None
    assert sleep["errors"] == 0
    assert sleep["statuses"] == {"200": FAST + SLOW}
    assert fail["errors"] == FAILED
    assert fail["error_rate"] == 1.0
    assert sleep["p50"] < 1.0
    assert sleep["p95"] < 1.0  # rank 59.85 of 63: still a fast one
    assert 1.0 < sleep["p99"] <= 2.5  # rank 62.4: one of the slow ones, in (1, 2.5]
    back = next(s for s in summary["services"] if s["service"] == "back")
    assert back["requests"] == FAST + SLOW + FAILED
    assert back["errors"] == FAILED
    gateway = wait_for(
        lambda: (
            (g := system.get("/v1/telemetry/summary", window=900)["gateway"])
            and g["requests"] >= FAST + SLOW + FAILED
            and g
        ),
        what="the gateway's counts",
    )
    assert gateway["statuses"].get("5xx") == FAILED


def test_one_request_through_two_services_is_one_trace(system: System) -> None:
    """A request through the gateway to front, which calls back, arrives through the
    services' real OTLP exporters as one trace holding spans of both, linked by parent."""
    trace_id = secrets.token_hex(16)
    parent = secrets.token_hex(8)
    headers = {"traceparent": f"00-{trace_id}-{parent}-01"}
    response = httpx.get(system.gateway + "/chain", headers=headers, timeout=10)
    assert response.status_code == 200, response.text

    def complete() -> dict[str, Any] | None:
        found = httpx.get(
            f"{system.api}/v1/traces/{trace_id}",
            headers={"authorization": f"Bearer {system.token}"},
        )
        if found.status_code != 200:
            return None
        trace = found.json()
        return trace if {"front", "back"} <= set(trace["services"]) else None

    trace = wait_for(complete, timeout=30, what="spans of front and back")
    spans = {s["span_id"]: s for s in trace["spans"]}
    back_server = next(s for s in spans.values() if s["service"] == "back")
    assert back_server["kind"] == "server"
    caller = spans[back_server["parent_span_id"]]
    assert caller["service"] == "front"
    assert caller["kind"] == "client"
    listed = system.get("/v1/traces", service="back", limit=500)
    assert trace_id in {t["trace_id"] for t in listed}
    # front's clients now show the calls in the summary
    summary = wait_for(
        lambda: (
            (
                s := next(
                    x
                    for x in system.get("/v1/telemetry/summary", window=900)["services"]
                    if x["service"] == "front"
                )
            )["clients"]
            and s
        ),
        what="front's client calls",
    )
    assert summary["clients"][0]["target"] == "back"
    assert summary["clients"][0]["calls"] >= 1


def test_traces_and_logs_are_kept_and_searchable(system: System) -> None:
    """A request's trace is in the kept store (telemetry/telemetry.db under .corral),
    found by route and by error; the access lines both services logged for it are found
    by its trace id, by level and by text, and the trace counts them."""
    trace_id = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    assert httpx.get(system.gateway + "/chain", headers=headers, timeout=10).status_code == 200
    assert httpx.get(system.gateway + "/fail", timeout=10).status_code == 503

    lines = wait_for(
        lambda: (
            (found := system.get("/v1/telemetry/logs", trace=trace_id))
            and {x["service"] for x in found} >= {"front", "back"}
            and found
        ),
        what="front's and back's lines of the trace",
    )
    assert all(x["trace_id"] == trace_id for x in lines)

    def logged() -> bool:
        found = httpx.get(
            f"{system.api}/v1/traces/{trace_id}",
            headers={"authorization": f"Bearer {system.token}"},
        )
        return found.status_code == 200 and found.json()["logs"] >= 2

    wait_for(logged, what="the trace, counting its lines")
    chains = system.get("/v1/traces", route="/chain", limit=500)
    assert trace_id in {t["trace_id"] for t in chains}
    assert {t["route"] for t in chains} == {"/chain"}
    failed = wait_for(lambda: system.get("/v1/traces", status="error"), what="an error trace")
    assert all(t["errors"] > 0 for t in failed)
    assert trace_id not in {t["trace_id"] for t in failed}
    assert system.get("/v1/telemetry/logs", q="/chain", service="front")
    assert all(
        x["level"] in {"warning", "error", "critical"}
        for x in system.get("/v1/telemetry/logs", level="warning")
    )
    assert (system.root / ".corral" / "telemetry" / "telemetry.db").is_file()


def test_cli_searches_traces_and_logs(system: System) -> None:
    """`corral traces` with filters (JSON and table), one trace as a waterfall, and
    `corral logs --trace/--grep/--level` read the kept store through the API."""
    trace_id = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    assert httpx.get(system.gateway + "/chain", headers=headers, timeout=10).status_code == 200

    def listed() -> list[dict[str, Any]] | None:
        done = corral(
            "traces",
            "--route",
            "/chain",
            "--service",
            "back",
            "--since",
            "10m",
            "--json",
            "-n",
            "500",
            cwd=system.root,
        )
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)
        return found if trace_id in {t["trace_id"] for t in found} else None

    found = wait_for(listed, what="the trace in `corral traces`")
    assert {t["route"] for t in found} == {"/chain"}
    none = corral("traces", "--min-duration", "1h", "--json", cwd=system.root)
    assert json.loads(none.stdout) == []
    shown = corral("traces", trace_id, cwd=system.root)
    assert shown.returncode == 0, shown.stderr
    assert "GET /chain" in shown.stdout
    assert "back" in shown.stdout
    table = corral("traces", "--service", "front", cwd=system.root)
    assert trace_id in table.stdout
    lines = wait_for(
        lambda: (
            (done := corral("logs", "--trace", trace_id, cwd=system.root)).returncode == 0
            and "back-" in done.stdout
            and "front-" in done.stdout
            and done.stdout
        ),
        what="the trace's lines in `corral logs --trace`",
    )
    assert "/chain" in lines
    grep = corral("logs", "front", "--grep", "/CHAIN", "-n", "5", cwd=system.root)
    assert grep.returncode == 0, grep.stderr
    assert "/chain" in grep.stdout
    assert "back-" not in grep.stdout
    bad = corral("logs", "--level", "loud", cwd=system.root)
    assert bad.returncode != 0
    assert "invalid --level" in bad.stderr + bad.stdout
    bad = corral("traces", "--min-duration", "soon", cwd=system.root)
    assert bad.returncode != 0
    assert "invalid duration" in bad.stderr + bad.stdout


def _trace(system: System, trace_id: str) -> dict[str, Any] | None:
    found = httpx.get(
        f"{system.api}/v1/traces/{trace_id}",
        headers={"authorization": f"Bearer {system.token}"},
    )
    return found.json() if found.status_code == 200 else None


def test_the_gateway_makes_spans_even_for_requests_it_aborts(system: System) -> None:
    """Envoy's tracer sends the gateway's server span to the receiver: a request through
    it is one trace with the gateway's span as the parent of front's, named by method
    and path without the query; a request the gateway aborted itself (a fault) still
    leaves a trace, an error, with the status Envoy answered."""
    admin = {"authorization": f"Bearer {system.token}"}
    trace_id = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    url = system.gateway + "/chain?api_key=hidden"
    assert httpx.get(url, headers=headers, timeout=10).status_code == 200
    trace = wait_for(
        lambda: (
            (t := _trace(system, trace_id))
            and {"corral-gateway", "front", "back"} <= set(t["services"])
            and t
        ),
        what="the gateway's span beside the services'",
    )
    gateway = next(s for s in trace["spans"] if s["service"] == "corral-gateway")
    front = next(s for s in trace["spans"] if s["service"] == "front" and s["kind"] == "server")
    assert front["parent_span_id"] == gateway["span_id"]
    assert gateway["name"] == "GET /chain"
    assert "hidden" not in json.dumps(gateway)
    assert trace["route"] == "/chain"

    fault = httpx.post(
        f"{system.api}/v1/chaos/gateway",
        json={"service": "front", "percent": 100, "abort_status": 503, "seconds": 30},
        headers=admin,
        timeout=30,
    )
    assert fault.status_code == 200, fault.text
    aborted_id = secrets.token_hex(16)
    try:
        aborted = httpx.get(
            system.gateway + "/chain",
            headers={"traceparent": f"00-{aborted_id}-{secrets.token_hex(8)}-01"},
            timeout=10,
        )
        assert aborted.status_code == 503
    finally:
        httpx.delete(f"{system.api}/v1/chaos", headers=admin, timeout=30)
    trace = wait_for(lambda: _trace(system, aborted_id), what="the aborted request's trace")
    assert trace["services"] == ["corral-gateway"]
    [span] = trace["spans"]
    assert span["attributes"]["http.status_code"] == "503"
    assert span["status"] == "error"
    assert aborted_id in {t["trace_id"] for t in system.get("/v1/traces", status="error")}


def test_receiver_refuses_spans_without_the_ingest_token(system: System) -> None:
    """The receiver answers problem+json 401 to an export without the instances' token
    (the admin token is not it)."""
    for token in ("wrong", system.token):
        response = httpx.post(
            system.api + "/otlp/v1/traces",
            content=b"",
            headers={"content-type": "application/x-protobuf", "authorization": f"Bearer {token}"},
        )
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"


def _session(system: System) -> tuple[httpx.Client, str]:
    link = corral("dashboard", cwd=system.root)
    assert link.returncode == 0, link.stderr
    url = link.stdout.split()[0]
    assert url.startswith(system.api + "/dashboard/#login=")
    token = url.split("#login=", 1)[1]
    client = httpx.Client(base_url=system.api, headers={"origin": system.api}, timeout=10)
    return client, token


def test_browser_login_exchanges_a_one_time_token_for_a_cookie(system: System) -> None:
    """A bad token gets problem+json 401; a good one a HttpOnly SameSite=Strict cookie
    that works for the API, once; a cross-site request with the cookie is refused."""
    client, token = _session(system)
    with client:
        bad = client.post("/v1/dashboard/session", json={"token": "not-a-token"})
        assert bad.status_code == 401
        assert bad.headers["content-type"] == "application/problem+json"
        assert "corral dashboard" in bad.json()["detail"]
        assert client.get("/v1/status").status_code == 401

        good = client.post("/v1/dashboard/session", json={"token": token})
        assert good.status_code == 204
        cookie = good.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert client.get("/v1/status").json()["system"] == "telemetry"

        again = httpx.post(
            system.api + "/v1/dashboard/session",
            json={"token": token},
            headers={"origin": system.api},
        )
        assert again.status_code == 401  # one time only
        cross = client.get("/v1/status", headers={"sec-fetch-site": "cross-site"})
        assert cross.status_code == 401


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def prometheus(system: System, tmp_path: Path) -> Iterator[str]:
    """The real Prometheus 2.42 on the generated configuration, its own storage."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    port = _free_port()
    config = system.root / ".corral" / "prometheus" / "prometheus.yml"
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
        try:
            return httpx.get(url + "/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, timeout=30, what="Prometheus to be ready")
        yield url
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def test_prometheus_scrapes_every_instance_from_the_target_file(
    system: System, prometheus: str
) -> None:
    """A user's own Prometheus, given .corral/prometheus/prometheus.yml, finds every
    instance and the gateway through the file_sd targets and scrapes each (up == 1)."""
    targets = json.loads((system.root / ".corral" / "prometheus" / "targets.json").read_text())
    expected = {group["labels"]["corral_instance"] for group in targets}
    assert expected == {"back-1", "back-2", "front-1", "corral-gateway"}

    def all_up() -> bool:
        answer = httpx.get(prometheus + "/api/v1/query", params={"query": "up"}, timeout=5)
        results = answer.json()["data"]["result"]
        up = {r["metric"].get("corral_instance"): r["value"][1] for r in results}
        return set(up) == expected and all(value == "1" for value in up.values())

    wait_for(all_up, timeout=60, what="up == 1 for every instance in Prometheus")


def test_top_prints_every_service(system: System) -> None:
    """`corral top --once` shows the RED table of every service and the gateway."""
    result = corral("top", "--once", "--window", "900", cwd=system.root)
    assert result.returncode == 0, result.stderr
    for name in ("gateway", "front", "back"):
        assert name in result.stdout


def test_dashboard_in_a_real_browser(system: System, tmp_path: Path) -> None:
    """Chromium logs in with the printed link, sees every instance, a chart with data, a
    trace waterfall with spans of front and back, filters traces to errors, follows a
    trace to its log lines and a line back to its trace, searches the kept logs, sees a
    log line arriving live, scales a service up and down (confirming), and logs out. A
    screenshot of each view is saved in the test's tmp dir; no view shows an error."""
    link = corral("dashboard", cwd=system.root)
    url = link.stdout.split()[0]
    with browser_page(url, viewport={"width": 1440, "height": 1000}) as (page, errors):
        assert "#login=" not in page.url  # the token left the address bar
        for instance in ("back-1", "back-2", "front-1"):
            page.wait_for_selector(f'#instances tr[data-instance="{instance}"]')
        httpx.get(system.gateway + "/chain", timeout=10)
        page.wait_for_selector(
            '#chart-rate[data-points]:not([data-points="0"]) canvas', timeout=60_000
        )

        page.screenshot(path=tmp_path / "overview.png", full_page=True)
        assert page.get_attribute("#updated", "class") != "bad"
        # The graph reads: node labels inside their boxes, no two edge labels overlap.
        layout = page.evaluate(
            """() => {
              const box = (n) => n.getBoundingClientRect();
              const inside = [...document.querySelectorAll('#graph g.node')].every((g) => {
                const r = box(g.querySelector('rect'));
                return [...g.querySelectorAll('text')].every((t) => {
                  const b = box(t);
                  return b.left >= r.left && b.right <= r.right + 1 && b.top >= r.top
                    && b.bottom <= r.bottom + 1;
                });
              });
              const labels = [...document.querySelectorAll('#graph .edge-label')].map(box);
              const overlaps = labels.some((a, i) => labels.slice(i + 1).some((b) =>
                a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom));
              return { inside, overlaps, labels: labels.length };
            }"""
        )
        assert layout == {"inside": True, "overlaps": False, "labels": 2}, layout
        page.click('#graph g.node[data-node="back"]')
        page.wait_for_function("() => location.hash === '#/services/back'")
        page.evaluate("location.hash = '#/overview'")

        httpx.get(system.gateway + "/fail", timeout=10)
        page.evaluate("location.hash = '#/traces'")
        page.wait_for_selector('.wf-row[data-service="front"]', timeout=60_000)
        page.wait_for_selector('.wf-row[data-service="back"]', timeout=60_000)
        page.screenshot(path=tmp_path / "traces.png", full_page=True)
        # The trace's log lines, one click away; each line links back to its trace.
        page.wait_for_selector("#trace-logs:not([hidden])", timeout=60_000)
        page.click("#trace-logs")
        page.wait_for_selector("#log-lines .log-line a.trace-link", timeout=60_000)
        assert page.input_value("#log-trace")
        assert "match" in (page.text_content("#log-status") or "")
        page.screenshot(path=tmp_path / "logs-of-a-trace.png", full_page=True)
        page.click("#log-lines .log-line a.trace-link")
        page.wait_for_selector('.wf-row[data-service="back"]', timeout=60_000)
        # Filtered to errors: only traces with errors are listed.
        page.check("#trace-errors")
        page.wait_for_function(
            "() => { const rows = [...document.querySelectorAll('#traces tbody tr')];"
            " return rows.length > 0 && rows.every((r) => r.textContent.includes('error')); }",
            timeout=60_000,
        )
        page.uncheck("#trace-errors")
        # A search of the kept logs: text and level filters.
        page.evaluate("location.hash = '#/logs'")
        page.fill("#log-text", "/fail")
        page.click("#log-search")
        page.wait_for_selector("#log-lines .log-line:has-text('/fail')", timeout=60_000)
        assert "match" in (page.text_content("#log-status") or "")
        page.click("#log-clear")

        page.evaluate("location.hash = '#/logs'")
        page.wait_for_selector("#log-status:text('live')", timeout=60_000)
        marker = secrets.token_hex(6)
        httpx.get(f"{system.gateway}/missing-{marker}", timeout=10)  # back logs a 404
        page.wait_for_selector(f"#log-lines .log-line:has-text('{marker}')", timeout=60_000)

        page.screenshot(path=tmp_path / "logs.png", full_page=True)

        # Actions: scale back up by one, then down again after confirming.
        page.evaluate("location.hash = '#/overview'")
        page.click('#instances tr[data-service="back"] button[data-action="scale-up"]')
        page.wait_for_selector('#instances tr[data-instance="back-3"]', timeout=60_000)
        page.once("dialog", lambda dialog: dialog.accept())
        page.click('#instances tr[data-service="back"] button[data-action="scale-down"]')
        page.wait_for_function(
            "() => document.querySelector('#action-message').textContent.includes('scaled to 2')",
            timeout=60_000,
        )
        assert system.get("/v1/status")["services"]["back"]["replicas"] == 2
        page.evaluate("location.hash = '#/events'")
        page.screenshot(path=tmp_path / "events.png", full_page=True)

        # Logout from the page itself (its DELETE carries the page's Origin) works.
        page.click("#logout")
        page.wait_for_selector("#login:not([hidden])")
        after = page.evaluate("fetch('/v1/status').then((r) => r.status)")
        assert after == 401
        assert not errors, errors
