"""CORRAL_LOG_FORMAT=ecs: the SDK's JSON lines under Elastic Common Schema names, still
indexed by level and trace id in the kept store (which reads both namings)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import structlog

from corral import contract
from corral.sdk import Service
from corral.sdk.testing import capture_logs, serve_in_process
from corral.telemetry import LEVELS, LogQuery, LogRecord, TelemetryStore


def _service() -> Service:
    svc = Service("shop")

    @svc.get("/buy")
    async def buy() -> dict[str, str]:
        svc.log.warning("low stock", item="pear")
        return {"ok": "yes"}

    return svc


async def test_ecs_lines_carry_ecs_names() -> None:
    """A request's lines have @timestamp, log.level, message, service.name, trace.id,
    span.id and ecs.version, and none of the default names they replace."""
    with capture_logs() as logs:
        async with serve_in_process(_service(), env={contract.LOG_FORMAT: "ecs"}) as client:
            assert (await client.get("/buy")).status_code == 200
    structlog.contextvars.clear_contextvars()
    [warning] = [e for e in logs if e.get("message") == "low stock"]
    assert warning["log.level"] == "warning"
    assert warning["service.name"] == "shop"
    assert warning["item"] == "pear"
    assert warning["ecs.version"]
    assert warning["@timestamp"].endswith("Z")
    assert len(warning["trace.id"]) == 32
    assert len(warning["span.id"]) == 16
    assert not {"event", "level", "timestamp", "trace_id", "service"} & set(warning)
    [access] = [e for e in logs if e.get("message") == "request"]
    assert access["http.route"] == "/buy"
    assert access["http.response.status_code"] == 200
    assert access["event.duration"] > 0
    assert access["trace.id"] == warning["trace.id"]


async def test_default_lines_keep_their_names() -> None:
    """Without the option the lines are as before (what existing readers expect)."""
    with capture_logs() as logs:
        async with serve_in_process(_service()) as client:
            await client.get("/buy")
    structlog.contextvars.clear_contextvars()
    [warning] = [e for e in logs if e.get("event") == "low stock"]
    assert warning["level"] == "warning"
    assert "ecs.version" not in warning


def test_the_store_indexes_level_and_trace_of_ecs_lines(tmp_path: Path) -> None:
    """A line with ECS names is found by --level and --trace like a default one."""
    trace = secrets.token_hex(16)
    ecs = (
        '{"@timestamp":"2026-01-01T00:00:00.000000Z","log.level":"error","message":"boom",'
        f'"service.name":"shop","trace.id":"{trace}","ecs.version":"8.11.0"}}'
    )
    default = f'{{"event":"fine","level":"info","trace_id":"{trace}"}}'
    store = TelemetryStore(tmp_path / "telemetry.db")
    try:
        now = time.time()
        store.put_logs([LogRecord(now, "shop", "shop-1", "stdout", ln) for ln in (ecs, default)])
        store.flush()
        errors = store.logs(LogQuery(min_level=LEVELS["error"]))
        assert [row["line"] for row in errors] == [ecs]
        assert len(store.logs(LogQuery(trace_id=trace))) == 2
    finally:
        store.close()
