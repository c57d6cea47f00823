"""The kept telemetry store: what goes in comes back out, filtered, across a reopen, and
retention, corruption and the queue's bound behave as documented (a real SQLite file)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.telemetry import LogQuery, LogRecord, SpanRecord, TelemetryStore, TraceQuery

NOW = 1_800_000_000.0


def span(
    trace: int,
    span_id: int,
    *,
    parent: int | None = None,
    service: str = "front",
    start: float = NOW,
    ms: float = 5.0,
    status: str = "unset",
    route: str | None = "/orders",
) -> SpanRecord:
    return SpanRecord(
        trace_id=f"{trace:032x}",
        span_id=f"{span_id:016x}",
        parent_span_id=None if parent is None else f"{parent:016x}",
        name=f"GET {route}" if parent is None else f"op {span_id}",
        kind="server",
        service=service,
        instance=f"{service}-1",
        start_ns=int(start * 1e9),
        end_ns=int((start + ms / 1000) * 1e9),
        status=status,
        status_message="",
        attributes={"http.route": route} if route else {},
        events=({"name": "retry", "t": start, "attributes": {"attempt": 1}},),
    )


def log(
    t: float,
    text: str,
    *,
    level: str | None = "info",
    trace: int | None = None,
    service: str = "front",
    instance: str = "front-1",
) -> LogRecord:
    if level is None:
        line = text
    else:
        fields: dict[str, Any] = {"event": text, "level": level}
        if trace is not None:
            fields["trace_id"] = f"{trace:032x}"
        line = json.dumps(fields)
    return LogRecord(t, service, instance, "stdout", line)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TelemetryStore]:
    found = TelemetryStore(tmp_path / "telemetry" / "telemetry.db", clock=lambda: NOW)
    yield found
    found.close()


def test_a_trace_is_assembled_from_spans_in_any_order_and_batch(store: TelemetryStore) -> None:
    """Spans of one trace from two services, child first, in two batches: one trace with
    its root's name and route, every service, the error counted, spans in start order."""
    store.put_spans([span(1, 2, parent=1, service="back", start=NOW + 0.001, status="error")])
    store.flush()
    early = store.traces(TraceQuery())
    assert early[0]["complete"] is False  # the root has not arrived: the earliest span shows
    store.put_spans([span(1, 1, start=NOW, ms=20)])
    store.put_spans([span(1, 2, parent=1, service="back", start=NOW + 0.001, status="error")])
    store.flush()  # the repeated span (an exporter's retry) is counted once
    [summary] = store.traces(TraceQuery())
    assert summary["name"] == "GET /orders"
    assert summary["route"] == "/orders"
    assert summary["complete"] is True
    assert summary["span_count"] == 2
    assert summary["errors"] == 1
    assert summary["services"] == ["back", "front"]
    assert summary["duration_ms"] == 20.0
    found = store.trace(summary["trace_id"].upper())
    assert found is not None
    assert [s["service"] for s in found["spans"]] == ["front", "back"]
    assert found["spans"][0]["events"][0]["attributes"] == {"attempt": 1}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (TraceQuery(), [4, 3, 2, 1]),
        (TraceQuery(limit=2), [4, 3]),
        (TraceQuery(service="back"), [3, 1]),
        (TraceQuery(route="/pay"), [2]),
        (TraceQuery(errors_only=True), [4]),
        (TraceQuery(min_duration_ms=100), [3]),
        (TraceQuery(since=NOW - 150), [4, 3]),
        (TraceQuery(before=NOW - 150), [2, 1]),
        (TraceQuery(service="back", errors_only=True), []),
    ],
)
def test_trace_filters(store: TelemetryStore, query: TraceQuery, expected: list[int]) -> None:
    """Each filter of `corral traces` and the dashboard, alone and combined."""
    store.put_spans(
        [
            span(1, 1, start=NOW - 400),
            span(1, 2, parent=1, service="back", start=NOW - 400),
            span(2, 3, start=NOW - 300, route="/pay"),
            span(3, 4, start=NOW - 100, ms=150),
            span(3, 5, parent=4, service="back", start=NOW - 100),
            span(4, 6, start=NOW, status="error"),
        ]
    )
    store.flush()
    assert [int(t["trace_id"], 16) for t in store.traces(query)] == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (LogQuery(), ["e", "d", "c", "b", "a"]),
        (LogQuery(text="payment FAILED"), ["d"]),
        (LogQuery(text="pay"), ["d", "b"]),  # a word's start
        (LogQuery(text="{"), ["d", "c", "b", "a"]),  # no word: the text alone decides
        (LogQuery(min_level=30), ["d", "c"]),
        (LogQuery(trace_id=f"{7:032x}"), ["d", "b"]),
        (LogQuery(services=["back"]), ["e"]),
        (LogQuery(instance="front-2"), ["c"]),
        (LogQuery(since=NOW + 2), ["e", "d", "c"]),
        (LogQuery(limit=2), ["e", "d"]),
    ],
)
def test_log_search(store: TelemetryStore, query: LogQuery, expected: list[str]) -> None:
    """`corral logs --grep/--level/--trace/--instance` and the dashboard's log filters."""
    lines = {
        "a": log(NOW, "started"),
        "b": log(NOW + 1, "payment accepted", trace=7),
        "c": log(NOW + 2, "slow", level="warning", instance="front-2"),
        "d": log(NOW + 3, "payment failed", level="error", trace=7),
        "e": log(NOW + 4, "plain text from print", level=None, service="back", instance="b-1"),
    }
    for record in lines.values():
        store.put_log(record)
    store.flush()
    by_line = {record.line: name for name, record in lines.items()}
    assert [by_line[x["line"]] for x in store.logs(query)] == expected


def test_the_store_outlives_a_restart(tmp_path: Path) -> None:
    """What one run stored, the next run reads (the `down`/`up` promise)."""
    path = tmp_path / "telemetry.db"
    first = TelemetryStore(path, clock=lambda: NOW)
    first.put_spans([span(9, 1)])
    first.put_log(log(NOW, "kept across runs", trace=9))
    first.close()
    second = TelemetryStore(path, clock=lambda: NOW)
    try:
        assert [t["trace_id"] for t in second.traces(TraceQuery())] == [f"{9:032x}"]
        assert second.trace(f"{9:032x}")["logs"] == 1  # type: ignore[index]
        assert second.logs(LogQuery(text="kept"))[0]["trace_id"] == f"{9:032x}"
    finally:
        second.close()


def test_retention_by_age_drops_whole_traces_and_old_lines(store: TelemetryStore) -> None:
    """Traces that started before the horizon go with every span; newer ones stay."""
    store.put_spans([span(1, 1, start=NOW - 90_000), span(1, 2, parent=1, start=NOW - 100)])
    store.put_spans([span(2, 3, start=NOW - 100)])
    store.put_logs([log(NOW - 90_000, "old words"), log(NOW - 10, "new words")])
    store.flush()
    store.retain(now=NOW)
    assert [int(t["trace_id"], 16) for t in store.traces(TraceQuery())] == [2]
    assert store.counts()["spans"] == 1
    assert [x["line"] for x in store.logs(LogQuery(text="words"))] == [log(0, "new words").line]


def test_retention_by_size_trims_the_oldest(tmp_path: Path) -> None:
    """Over ``max_bytes`` the oldest traces and lines go until the file fits."""
    store = TelemetryStore(tmp_path / "t.db", max_bytes=1024 * 1024, clock=lambda: NOW)
    try:
        for batch in range(20):
            store.put_spans(
                [
                    span(batch * 100 + i, i + 1, start=NOW - 3000 + batch * 100 + i)
                    for i in range(100)
                ]
            )
            store.put_logs([log(NOW - 3000 + batch * 100 + i, "x" * 500) for i in range(100)])
        store.flush()
        before = store.counts()
        store.retain(now=NOW)
        after = store.counts()
        assert store.size() <= 1024 * 1024
        assert 0 < after["traces"] < before["traces"]
        assert 0 < after["logs"] < before["logs"]
        newest = store.traces(TraceQuery(limit=1))[0]["trace_id"]
        assert int(newest, 16) == 1999  # the newest are the ones kept
    finally:
        store.close()


def test_metrics_roll_up_from_fine_to_coarse(store: TelemetryStore) -> None:
    """Increments land in 10 s buckets; older than an hour they are summed into 5 min
    buckets, and totals per step read either the same."""
    key = ("requests", "/orders", "200")
    old = NOW - 7200
    for i in range(6):
        store.put_metrics(old + i * 10, {"front": {key: 1.0}})
    store.put_metrics(NOW - 5, {"front": {key: 2.0}})
    store.flush()
    store.retain(now=NOW)
    with sqlite3.connect(store.path) as conn:
        steps = sorted(conn.execute("SELECT step, value FROM metrics").fetchall())
    assert steps == [(10.0, 2.0), (300.0, 6.0)]
    series = store.metric_totals("front", since=NOW - 9000, until=NOW, step=3600)
    assert sum(v for point in series for v in point["values"].values()) == 8.0


def test_a_corrupt_store_is_moved_aside(tmp_path: Path) -> None:
    """A file that is not a database does not stop telemetry: it is moved aside, with a
    warning, and a new store works."""
    path = tmp_path / "telemetry.db"
    path.write_bytes(b"this is not sqlite" * 1000)
    store = TelemetryStore(path, clock=lambda: NOW)
    try:
        assert store.moved_aside is not None
        assert store.moved_aside.read_bytes().startswith(b"this is not sqlite")
        assert "moved to" in store.warnings[0]
        store.put_spans([span(1, 1)])
        store.flush()
        assert len(store.traces(TraceQuery())) == 1
    finally:
        store.close()


def test_a_full_queue_drops_and_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that falls behind costs dropped batches, counted, never a blocked caller."""
    release = threading.Event()
    original = TelemetryStore._write

    def slow(self: TelemetryStore, *args: Any) -> None:
        release.wait(10)
        original(self, *args)

    monkeypatch.setattr(TelemetryStore, "_write", slow)
    store = TelemetryStore(tmp_path / "t.db", clock=lambda: NOW, queue_batches=2)
    try:
        for i in range(10):
            store.put_spans([span(i, 1)])
        assert store.dropped >= 7
        release.set()
        store.flush()
        assert 1 <= len(store.traces(TraceQuery())) <= 3
    finally:
        release.set()
        store.close()


def test_a_store_of_another_schema_version_is_moved_aside(tmp_path: Path) -> None:
    """A file another version of Corral laid out differently is kept aside, not mixed."""
    path = tmp_path / "telemetry.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE spans (whatever TEXT)")
        conn.execute("PRAGMA user_version = 99")
    store = TelemetryStore(path, clock=lambda: NOW)
    try:
        assert store.moved_aside is not None
        assert "schema version 99" in store.warnings[0]
        store.put_spans([span(1, 1)])
        store.flush()
        assert len(store.traces(TraceQuery())) == 1
    finally:
        store.close()


def test_a_traces_route_is_its_outermost_service_route(store: TelemetryStore) -> None:
    """The gateway's root span has no route: the trace takes the route of its earliest
    span that has one, whichever batch brought it first."""
    store.put_spans([span(5, 3, parent=2, service="back", start=NOW + 0.002, route="/sleep")])
    store.flush()
    store.put_spans(
        [
            span(5, 1, service="corral-gateway", start=NOW, route=None),
            span(5, 2, parent=1, start=NOW + 0.001, route="/chain"),
        ]
    )
    store.flush()
    [summary] = store.traces(TraceQuery())
    assert summary["service"] == "corral-gateway"
    assert summary["route"] == "/chain"
    assert [int(t["trace_id"], 16) for t in store.traces(TraceQuery(route="/chain"))] == [5]


def test_a_nearly_full_disk_trims_early_with_a_warning(
    store: TelemetryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the size limit but with the disk nearly full, the oldest tenth goes and the
    store says why."""
    store.put_spans([span(i, i + 1, start=NOW - 100 + i) for i in range(20)])
    store.flush()
    usage = shutil.disk_usage(store.path.parent)
    monkeypatch.setattr(
        "corral.telemetry._store.shutil.disk_usage",
        lambda _: usage._replace(free=1024 * 1024),
    )
    store.retain(now=NOW)
    assert store.counts()["traces"] < 20
    assert any("free" in warning for warning in store.warnings)


def test_history_reads_red_from_the_rollups_across_a_reopen(tmp_path: Path) -> None:
    """Requests, errors and a p95 per step come back from the stored increments after the
    store is closed and opened again (a `corral down`/`up`); a step without data is null."""
    path = tmp_path / "telemetry.db"
    first = TelemetryStore(path, clock=lambda: NOW)
    deltas = {
        ("http", "GET", "/orders", "200"): 9.0,
        ("http", "GET", "/orders", "503"): 1.0,
        ("bucket", "GET", "/orders", "0.01"): 8.0,
        ("bucket", "GET", "/orders", "0.1"): 2.0,
        ("latency_sum", "GET", "/orders", ""): 0.2,
    }
    first.put_metrics(NOW - 100, {"front": deltas})
    first.flush()
    first.close()
    again = TelemetryStore(path, clock=lambda: NOW)
    try:
        history = again.history("front", since=NOW - 600, until=NOW, step=60)
    finally:
        again.close()
    assert len(history["t"]) == len(history["rate"]) == 10
    filled = [i for i, n in enumerate(history["requests"]) if n is not None]
    assert len(filled) == 1, history
    i = filled[0]
    assert history["t"][i] - 60 <= NOW - 100 < history["t"][i]
    assert (history["requests"][i], history["errors"][i]) == (10, 1)
    assert history["rate"][i] == pytest.approx(10 / 60, abs=1e-3)
    assert history["error_rate"][i] == pytest.approx(0.1)
    assert 0.01 < history["p95"][i] <= 0.1
    assert history["rate"][:i] == [None] * i  # nothing stored then: a gap, not a zero
