"""The kept telemetry store (corral.telemetry.TelemetryStore): ingest and query speed.

Goals (issue 15): ingest >= 10k spans/s and >= 20k log lines/s; the dashboard's queries
answer in p95 < 100 ms with 1M spans stored. Spans and lines are shaped like the SDK's
(a request of 4 spans over 2 services, JSON log lines with level and trace id) and put
on the store's queue in the batches the receiver and the log capture hand it; the time
counted is from the first put to the writer having committed the last batch.

    uv run python bench/telemetry_store.py            # 1M spans, as in the goal
    uv run python bench/telemetry_store.py --spans 100000   # quicker
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

from _common import percentile, write_result

from corral.telemetry import LogQuery, LogRecord, SpanRecord, TelemetryStore, TraceQuery

SERVICES = ("gateway", "rides", "matching", "payments")
ROUTES = ("/rides", "/rides/{id}", "/drivers/{id}/location", "/payments")


def trace_spans(n: int, t0_ns: int, rng: random.Random) -> list[SpanRecord]:
    """Trace ``n``: a server span, a client call, the callee's server span, a publish."""
    trace_id = f"{rng.getrandbits(128):032x}"
    route = ROUTES[n % len(ROUTES)]
    start = t0_ns + n * 1_000_000
    error = n % 50 == 0
    spans = []
    parent = None
    for depth in range(4):
        span_id = f"{rng.getrandbits(64):016x}"
        # payments is in one trace in 100: the service filter's rare case
        service = "payments" if depth == 3 and n % 100 == 0 else SERVICES[min(depth // 2 + 1, 2)]
        spans.append(
            SpanRecord(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=f"GET {route}" if depth == 0 else f"call {depth}",
                kind=("server", "client", "server", "producer")[depth],
                service=service,
                instance=f"{service}-1",
                start_ns=start + depth * 100_000,
                end_ns=start + 5_000_000 - depth * 100_000 + (200_000_000 if error else 0),
                status="error" if error and depth == 0 else "unset",
                status_message="",
                attributes={
                    "http.route": route,
                    "http.request.method": "GET",
                    "http.response.status_code": 500 if error else 200,
                    "server.address": "127.0.0.1",
                },
                events=(),
            )
        )
        parent = span_id
    return spans


def log_line(n: int, t: float) -> LogRecord:
    level = "warning" if n % 20 == 0 else "info"
    trace = f"{n * 7919:032x}"
    line = (
        f'{{"event": "request handled", "level": "{level}", "method": "GET", '
        f'"path": "/rides/{n}", "status": 200, "duration_ms": 3.{n % 10}, '
        f'"trace_id": "{trace}", "request_id": "r{n}"}}'
    )
    service = SERVICES[n % 4]
    return LogRecord(t, service, f"{service}-1", "stdout", line)


def writer_cpu(store: TelemetryStore) -> float:
    """CPU seconds the store's writer thread has used (from /proc: the machine is shared,
    so wall-clock rates say as much about the neighbours as about the store)."""
    tid = store._thread.native_id
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest_spans(store: TelemetryStore, traces: int, *, t0_ns: int, batch: int = 128) -> float:
    rng = random.Random(t0_ns)  # each call its own trace ids
    pending: list[SpanRecord] = []
    start = time.perf_counter()
    for n in range(traces):
        pending.extend(trace_spans(n, t0_ns, rng))
        if len(pending) >= batch * 4:
            store.put_spans(pending)
            pending = []
    store.put_spans(pending)
    store.flush(timeout=3600)
    return time.perf_counter() - start


def ingest_logs(store: TelemetryStore, lines: int, *, t0: float, batch: int = 64) -> float:
    start = time.perf_counter()
    for first in range(0, lines, batch):
        store.put_logs([log_line(n, t0 + n / 1000) for n in range(first, first + batch)])
    store.flush(timeout=3600)
    return time.perf_counter() - start


def timed(fn: object, repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        begin = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - begin) * 1000)
    return {
        "p50_ms": round(percentile(samples, 0.5), 2),
        "p95_ms": round(percentile(samples, 0.95), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--logs", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    traces = args.spans // 4
    with tempfile.TemporaryDirectory() as tmp:
        store = TelemetryStore(Path(tmp) / "telemetry.db", keep=10 * 86400, max_bytes=2**40)
        now = time.time()
        t0_ns = int((now - 3600) * 1e9)
        # Ingest speed is measured on a fresh store and on a full one (the last 10%).
        first = max(traces // 10, 1)
        cpu0 = writer_cpu(store)
        fresh_s = ingest_spans(store, first, t0_ns=t0_ns)
        fresh_cpu = writer_cpu(store) - cpu0
        full_s = None
        rest = traces - first
        if rest:
            ingest_spans(store, rest - first, t0_ns=t0_ns + first * 1_000_000)
            full_s = ingest_spans(store, first, t0_ns=t0_ns + (traces - first) * 1_000_000)
        cpu0 = writer_cpu(store)
        logs_s = ingest_logs(store, args.logs, t0=now - 3600)
        logs_cpu = writer_cpu(store) - cpu0
        counts = store.counts()
        some_trace = store.traces(TraceQuery(limit=1))[0]["trace_id"]
        queries = {
            "traces_newest_50": lambda: store.traces(TraceQuery(limit=50)),
            "traces_service_payments": lambda: store.traces(
                TraceQuery(service="payments", limit=50)
            ),
            "traces_route": lambda: store.traces(TraceQuery(route="/payments", limit=50)),
            "traces_errors": lambda: store.traces(TraceQuery(errors_only=True, limit=50)),
            "traces_min_duration_100ms": lambda: store.traces(
                TraceQuery(min_duration_ms=100, limit=50)
            ),
            "trace_one": lambda: store.trace(some_trace),
            "logs_newest_200": lambda: store.logs(LogQuery(limit=200)),
            "logs_grep": lambda: store.logs(LogQuery(text="/rides/1234", limit=200)),
            "logs_grep_common": lambda: store.logs(LogQuery(text="request handled", limit=200)),
            "logs_level_warning": lambda: store.logs(LogQuery(min_level=30, limit=200)),
            "logs_trace": lambda: store.logs(LogQuery(trace_id=f"{1234 * 7919:032x}")),
        }
        results = {name: timed(fn, args.repeat) for name, fn in queries.items()}
        size = os.path.getsize(store.path)
        store.close()
    spans_per_s = first * 4 / fresh_s
    out = {
        "what": "TelemetryStore: SQLite WAL, one writer thread; ingest from put to commit; "
        "queries on a reader connection with the store full",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            # Shared with other work: wall-clock rates fall as the load rises.
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "stored": {**counts, "file_mb": round(size / 2**20, 1)},
        "ingest": {
            "spans_per_s_fresh": round(spans_per_s),
            "spans_per_s_full": round(first * 4 / full_s) if full_s else None,
            "log_lines_per_s": round(args.logs / logs_s),
            "spans_per_writer_cpu_s_fresh": round(first * 4 / max(fresh_cpu, 1e-3)),
            "log_lines_per_writer_cpu_s": round(args.logs / max(logs_cpu, 1e-3)),
            "goal_spans_per_s": 10_000,
            "goal_log_lines_per_s": 20_000,
        },
        "queries": results,
        "goal_query_p95_ms": 100,
        "worst_query_p95_ms": max(r["p95_ms"] for r in results.values()),
    }
    path = write_result("telemetry_store.json", out)
    print(path.read_text())
    sys.exit(0)


if __name__ == "__main__":
    main()
