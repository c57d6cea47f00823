"""The kept telemetry store: spans, a log index and metric rollups in one SQLite file.

``<state_dir>/telemetry/telemetry.db`` (WAL) outlives ``corral down``: the next ``up``
of the same system opens it again, so traces, logs and metrics of earlier runs can
still be searched (the dashboard, ``corral traces``, ``corral logs --grep``).

Writes never happen on a request path. The API's OTLP receiver, the runtime's log
capture and the scraper only put batches on a bounded queue (:meth:`TelemetryStore.put`
costs a lock and an append); one writer thread drains it and writes everything it found
in one transaction. When the writer falls more than ``_QUEUE_BATCHES`` batches behind,
new batches are dropped and counted (``dropped``) rather than growing memory.

Readers open their own connections (WAL lets them read while the writer writes); every
query a dashboard view makes is answered from an index (see ``_SCHEMA``).

Tables:

- ``spans``: one row per span, ``attributes``/``events`` as JSON.
- ``traces``: one row per trace, rebuilt from its spans whenever a batch touches it
  (spans of one trace arrive from several services in any order), so listing the newest
  traces with filters walks one index and never groups a million spans.
- ``trace_services``: which services a trace crossed (the ``--service`` filter).
- ``logs`` and ``logs_fts``: captured lines with level and trace id lifted out of the
  SDK's JSON, and an FTS5 index of their words: ``--grep`` finds lines that contain
  the text where it starts a word (the index narrows, the text itself decides).
- ``metrics``: per service, metric key and time bucket, the increments the scraper
  saw; 10 s buckets for the last hour, 5 min buckets beyond (rolled up by retention).

Retention, run by the writer every ``_RETENTION_EVERY`` seconds: rows older than
``keep`` seconds go; when the file holds more than ``max_bytes``, or the disk has less
than ``_LOW_DISK`` bytes free, the oldest tenth goes too (with a warning) until it fits.

A store that cannot be opened (corrupt, not a database, locked by a process that will
not let go) is moved aside with a warning and a new one started: telemetry never stops
``corral up``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from corral.telemetry._otlp import SpanRecord
from corral.telemetry._window import _overall as overall_red

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_MAX_BYTES",
    "LEVELS",
    "LogQuery",
    "LogRecord",
    "StoreReader",
    "TelemetryStore",
    "TraceQuery",
]

_LOG = logging.getLogger("corral.telemetry")

DEFAULT_KEEP = 24 * 3600.0
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
FINE_STEP = 10.0
"""Seconds per metric bucket for the last hour."""
COARSE_STEP = 300.0
"""Seconds per metric bucket beyond the last hour."""
_FINE_FOR = 3600.0
_QUEUE_BATCHES = 10_000
_RETENTION_EVERY = 30.0
_LOW_DISK = 256 * 1024 * 1024
"""Free bytes under which retention trims early: a full disk would stop the services
writing their own data, which matters more than old telemetry."""

LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}
"""Level names (structlog's and logging's) -> a rank, so ``--level warning`` means
warning and worse."""
_LEVEL_NAMES = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}

SCHEMA_VERSION = 1
"""Raised with every change of ``_SCHEMA``: a store of another version is moved aside."""

_ROUTE_KEYS = ("http.route", "url.path", "http.target")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    service TEXT NOT NULL,
    instance TEXT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT NOT NULL,
    route TEXT,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS spans_id ON spans(trace_id, span_id);
CREATE INDEX IF NOT EXISTS spans_start ON spans(start_ns);
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    span_count INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    root_span_id TEXT,
    name TEXT,
    service TEXT,
    route TEXT,
    complete INTEGER NOT NULL DEFAULT 0,
    root_start_ns INTEGER,
    route_start_ns INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS traces_start ON traces(start_ns);
-- Errors are rare: `--status error` walks only them, newest first.
CREATE INDEX IF NOT EXISTS traces_errors ON traces(start_ns) WHERE errors > 0;
CREATE TABLE IF NOT EXISTS trace_services (
    service TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    PRIMARY KEY (trace_id, service)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS trace_services_start ON trace_services(service, start_ns);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    t REAL NOT NULL,
    service TEXT NOT NULL,
    instance TEXT NOT NULL,
    stream TEXT NOT NULL,
    level INTEGER,
    trace_id TEXT,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_t ON logs(t);
CREATE INDEX IF NOT EXISTS logs_trace ON logs(trace_id) WHERE trace_id IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(
    line, content='logs', content_rowid='id', tokenize='unicode61'
);
CREATE TABLE IF NOT EXISTS metrics (
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    bucket REAL NOT NULL,
    step REAL NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (service, bucket, key, step)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS metrics_bucket ON metrics(bucket);
"""

_REBUILD_TRACES = """
INSERT OR REPLACE INTO traces(trace_id, start_ns, end_ns, span_count, errors, root_span_id)
SELECT s.trace_id, min(s.start_ns), max(s.end_ns), count(*), sum(s.status = 'error'),
       (SELECT r.span_id FROM spans r
        WHERE r.trace_id = s.trace_id
          AND (r.parent_span_id IS NULL OR NOT EXISTS (
                SELECT 1 FROM spans p
                WHERE p.trace_id = r.trace_id AND p.span_id = r.parent_span_id))
        ORDER BY r.parent_span_id IS NOT NULL, r.start_ns LIMIT 1)
FROM spans s WHERE s.trace_id IN (SELECT value FROM json_each(:ids)) GROUP BY s.trace_id
"""
_ROOT_FIELDS = """
UPDATE traces SET (name, service, complete, root_start_ns) = (
    SELECT r.name, r.service, r.parent_span_id IS NULL, r.start_ns FROM spans r
    WHERE r.trace_id = traces.trace_id AND r.span_id = traces.root_span_id),
  (route, route_start_ns) = (
    SELECT r.route, r.start_ns FROM spans r
    WHERE r.trace_id = traces.trace_id AND r.route IS NOT NULL ORDER BY r.start_ns LIMIT 1)
WHERE trace_id IN (SELECT value FROM json_each(:ids))
"""
_LIST_TRACES = """
SELECT t.trace_id, t.start_ns, t.end_ns, t.span_count, t.errors, t.name, t.service, t.route,
       t.complete,
       (SELECT group_concat(service, ',') FROM trace_services x WHERE x.trace_id = t.trace_id)
FROM traces t INDEXED BY {index} WHERE"""
_LIST_TRACES_OF = """
SELECT t.trace_id, t.start_ns, t.end_ns, t.span_count, t.errors, t.name, t.service, t.route,
       t.complete,
       (SELECT group_concat(service, ',') FROM trace_services x WHERE x.trace_id = t.trace_id)
FROM trace_services s INDEXED BY trace_services_start JOIN traces t ON t.trace_id = s.trace_id
WHERE s.service = ? AND"""
_WORD = re.compile(r"\w+")
_LIST_LOGS = "SELECT l.id, l.t, l.service, l.instance, l.stream, l.level, l.trace_id, l.line FROM"


@dataclass(frozen=True)
class LogRecord:
    """One captured line (the runtime's ``LogLine`` has these fields)."""

    t: float
    service: str
    instance: str
    stream: str
    line: str


@dataclass(frozen=True)
class TraceQuery:
    service: str | None = None
    route: str | None = None
    errors_only: bool = False
    min_duration_ms: float | None = None
    since: float | None = None
    """Unix time: traces that started at or after it."""
    before: float | None = None
    """Unix time: traces that started before it (paging back while reading)."""
    limit: int = 50


@dataclass(frozen=True)
class LogQuery:
    services: Sequence[str] = ()
    instance: str | None = None
    min_level: int | None = None
    text: str | None = None
    trace_id: str | None = None
    since: float | None = None
    before_id: int | None = None
    """Lines stored before this one (paging back)."""
    limit: int = 200


def _route(attributes: Mapping[str, Any]) -> str | None:
    for key in _ROUTE_KEYS:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _log_fields(line: str) -> tuple[int | None, str | None]:
    """Level rank and trace id of an SDK JSON line (structlog; default or ECS names), or
    (None, None)."""
    if not line.startswith("{"):
        return None, None
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(value, dict):
        return None, None
    # The SDK's default names, or ECS's (CORRAL_LOG_FORMAT=ecs).
    level = LEVELS.get(str(value.get("level", value.get("log.level", ""))).lower())
    trace = value.get("trace_id", value.get("trace.id"))
    trace_id = trace.lower() if isinstance(trace, str) and len(trace) == 32 else None
    if trace_id == "0" * 32:
        trace_id = None
    return level, trace_id


class StoreReader:
    """Reads a store file, from any thread (each call opens its own read-only
    connection). ``corral traces`` and ``corral logs --grep`` use one directly when the
    system is down; :class:`TelemetryStore` adds the writer."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=2.0)
        try:
            yield conn
        finally:
            conn.close()

    def traces(self, query: TraceQuery) -> list[dict[str, Any]]:
        """Summaries of the traces that match, the most recently started first."""
        where: list[str] = ["1"]
        params: list[Any] = []
        if query.since is not None:
            where.append("t.start_ns >= ?")
            params.append(int(query.since * 1e9))
        if query.before is not None:
            where.append("t.start_ns < ?")
            params.append(int(query.before * 1e9))
        if query.errors_only:
            where.append("t.errors > 0")
        if query.min_duration_ms is not None:
            where.append("t.end_ns - t.start_ns >= ?")
            params.append(int(query.min_duration_ms * 1e6))
        if query.route is not None:
            where.append("t.route = ?")
            params.append(query.route)
        # Only fixed clauses are joined; every value is a parameter.
        if query.service is not None:
            # Walk the service's own index, newest first: a service in few traces would
            # otherwise mean reading every trace.
            sql = " ".join(
                (
                    _LIST_TRACES_OF,
                    " AND ".join(where),
                    "ORDER BY s.start_ns DESC LIMIT ?",
                )
            )
            params.insert(0, query.service)
        else:
            index = "traces_errors" if query.errors_only else "traces_start"
            sql = " ".join(
                (
                    _LIST_TRACES.format(index=index),
                    " AND ".join(where),
                    "ORDER BY t.start_ns DESC LIMIT ?",
                )
            )
        params.append(query.limit)
        with self._reader() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_trace_summary(row) for row in rows]

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace: its summary, every span in start order, and how many log lines
        carry its id."""
        trace_id = trace_id.lower()
        with self._reader() as conn:
            row = conn.execute(
                "SELECT t.trace_id, t.start_ns, t.end_ns, t.span_count, t.errors, t.name,"
                " t.service, t.route, t.complete,"
                " (SELECT group_concat(service, ',') FROM trace_services x"
                "  WHERE x.trace_id = t.trace_id)"
                " FROM traces t WHERE t.trace_id = ?",
                (trace_id,),
            ).fetchone()
            if row is None:
                return None
            spans = conn.execute(
                "SELECT trace_id, span_id, parent_span_id, name, kind, service, instance,"
                " start_ns, end_ns, status, status_message, attributes, events"
                " FROM spans WHERE trace_id = ? ORDER BY start_ns, span_id",
                (trace_id,),
            ).fetchall()
            logs = conn.execute(
                "SELECT count(*) FROM logs WHERE trace_id = ?", (trace_id,)
            ).fetchone()[0]
        return {**_trace_summary(row), "logs": logs, "spans": [_span_json(s) for s in spans]}

    def logs(self, query: LogQuery) -> list[dict[str, Any]]:
        """Lines that match, the newest first (each with its ``id`` for paging)."""
        where: list[str] = ["1"]
        params: list[Any] = []
        source = "logs l"
        if query.text:
            words = _WORD.findall(query.text)
            if words:
                # The index finds lines with these words in a row, the last one as a
                # prefix; the text itself then has to be in the line (case aside).
                source = "logs_fts f JOIN logs l ON l.id = f.rowid"
                where.append("logs_fts MATCH ?")
                params.append('"' + " ".join(words) + '"*')
            where.append("instr(lower(l.line), lower(?)) > 0")
            params.append(query.text)
        if query.services:
            where.append(f"l.service IN ({','.join('?' * len(query.services))})")
            params.extend(query.services)
        if query.instance:
            where.append("l.instance = ?")
            params.append(query.instance)
        if query.min_level is not None:
            where.append("l.level >= ?")
            params.append(query.min_level)
        if query.trace_id:
            where.append("l.trace_id = ?")
            params.append(query.trace_id.lower())
        if query.since is not None:
            where.append("l.t >= ?")
            params.append(query.since)
        if query.before_id is not None:
            where.append("l.id < ?")
            params.append(query.before_id)
        # Only fixed clauses are joined; every value is a parameter.
        # FTS5 yields its matches in rowid order when asked: the newest first, stopping
        # at the limit, rather than every match sorted.
        order = "ORDER BY f.rowid DESC" if source != "logs l" else "ORDER BY l.id DESC"
        sql = " ".join((_LIST_LOGS, source, "WHERE", " AND ".join(where), order, "LIMIT ?"))
        params.append(query.limit)
        with self._reader() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [
            {
                "id": r[0],
                "t": r[1],
                "service": r[2],
                "instance": r[3],
                "stream": r[4],
                "level": _LEVEL_NAMES.get(r[5]) if r[5] is not None else None,
                "trace_id": r[6],
                "line": r[7],
            }
            for r in rows
        ]

    def metric_totals(
        self, service: str, *, since: float, until: float, step: float
    ) -> list[dict[str, Any]]:
        """Per step of ``step`` seconds in ``[since, until)``: the increments of every
        metric key of ``service`` (from fine or coarse buckets, whichever are kept)."""
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT bucket - ((bucket - :since) % :step) AS slot, key, sum(value)"
                " FROM metrics WHERE service = :service AND bucket >= :since AND bucket < :until"
                " GROUP BY slot, key ORDER BY slot",
                {"since": since, "step": step, "service": service, "until": until},
            ).fetchall()
        out: dict[float, dict[str, float]] = {}
        for slot, key, value in rows:
            out.setdefault(slot, {})[key] = value
        return [{"t": slot, "values": values} for slot, values in sorted(out.items())]

    def history(self, service: str, *, since: float, until: float, step: float) -> dict[str, Any]:
        """Per step of ``step`` seconds in ``[since, until)``: the RED of ``service``
        from the kept rollups (``t`` holds each step's end; a step with nothing stored,
        such as while the system was down, is null throughout, so a chart shows a gap)."""
        since -= since % step
        steps = max(1, math.ceil((until - since) / step))
        found = {
            round((row["t"] - since) / step): row["values"]
            for row in self.metric_totals(service, since=since, until=until, step=step)
        }
        names = ("rate", "error_rate", "p50", "p95", "p99", "requests", "errors")
        columns: dict[str, list[Any]] = {name: [] for name in names}
        keys: dict[str, Any] = {}  # each stored key parsed once per query, not per step
        for index in range(steps):
            values = found.get(index)
            red = _red_of(values, step, keys) if values else None
            for name in names:
                columns[name].append(None if red is None else red[name])
        times = [round(since + (i + 1) * step, 3) for i in range(steps)]
        return {"service": service, "step": step, "t": times, **columns}

    def counts(self) -> dict[str, int]:
        with self._reader() as conn:
            return {
                table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names
                for table in ("spans", "traces", "logs", "metrics")
            }


class TelemetryStore(StoreReader):
    """The store of one system. ``put_*`` from any thread (never blocks); reads from any
    thread (each opens its own connection); ``close`` once."""

    def __init__(
        self,
        path: Path,
        *,
        keep: float = DEFAULT_KEEP,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Any = time.time,
        queue_batches: int = _QUEUE_BATCHES,
    ) -> None:
        super().__init__(path)
        self.keep = keep
        self.max_bytes = max_bytes
        self._clock = clock
        self.dropped = 0
        """Batches refused because the writer was too far behind."""
        self.moved_aside: Path | None = None
        """Where an unreadable store was moved on open."""
        self.warnings: list[str] = []
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=queue_batches)
        self._writer = self._open()
        self._thread = threading.Thread(target=self._run, name="corral-telemetry-store")
        self._thread.daemon = True
        self._thread.start()

    # --- opening --------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect_writer()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.broken-{int(self._clock())}")
            for suffix in ("", "-wal", "-shm"):
                source = Path(str(self.path) + suffix)
                if source.exists():
                    source.replace(Path(str(aside) + suffix))
            self.moved_aside = aside
            self._warn(
                f"the telemetry store {self.path} could not be opened ({exc}): "
                f"moved to {aside}, starting a new one"
            )
            return self._connect_writer()

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=2.0, check_same_thread=False, isolation_level=None
        )
        try:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes on a new file
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(
                "PRAGMA synchronous = NORMAL"
            )  # WAL: durable at checkpoints, never corrupt
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables and version != SCHEMA_VERSION:
                # Another version's layout: kept aside whole rather than half-migrated.
                raise sqlite3.DatabaseError(f"schema version {version}, not {SCHEMA_VERSION}")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _warn(self, message: str) -> None:
        _LOG.warning("telemetry: %s", message)
        self.warnings.append(message)
        del self.warnings[:-20]

    # --- writing (any thread) --------------------------------------------------------

    def _put(self, kind: str, payload: Any) -> None:
        try:
            self._queue.put_nowait((kind, payload))
        except queue.Full:
            self.dropped += 1

    def put_spans(self, spans: Sequence[SpanRecord]) -> None:
        if spans:
            self._put("spans", spans)

    def put_log(self, record: LogRecord) -> None:
        self._put("log", record)

    def put_logs(self, records: Sequence[LogRecord]) -> None:
        if records:
            self._put("logs", records)

    def put_metrics(self, t: float, deltas: Mapping[str, Mapping[Any, float]]) -> None:
        """One scrape round: per service, metric key -> increment."""
        if deltas:
            self._put("metrics", (t, deltas))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything put before this call is written."""
        done = threading.Event()
        self._queue.put(("flush", done))
        done.wait(timeout)

    def close(self) -> None:
        """Write what is queued, then stop the writer. Never raises."""
        if not self._thread.is_alive():
            return
        self._queue.put(("stop", None))
        self._thread.join(timeout=30)
        with contextlib.suppress(sqlite3.Error):
            self._writer.execute("PRAGMA optimize")
            self._writer.close()

    # --- the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        last_retention = 0.0
        while True:
            items = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(items) < 5000:
                    items.append(self._queue.get_nowait())
            stop = False
            events: list[threading.Event] = []
            spans: list[SpanRecord] = []
            logs: list[LogRecord] = []
            metrics: list[tuple[float, Mapping[str, Mapping[Any, float]]]] = []
            for kind, payload in items:
                if kind == "spans":
                    spans.extend(payload)
                elif kind == "log":
                    logs.append(payload)
                elif kind == "logs":
                    logs.extend(payload)
                elif kind == "metrics":
                    metrics.append(payload)
                elif kind == "flush":
                    events.append(payload)
                elif kind == "stop":
                    stop = True
            try:
                self._write(spans, logs, metrics)
                now = self._clock()
                if now - last_retention >= _RETENTION_EVERY:
                    last_retention = now
                    self.retain(now=now)
            except sqlite3.Error as exc:  # a full disk, a file removed under us
                self._warn(f"writing telemetry failed: {exc}")
            for event in events:
                event.set()
            if stop:
                return

    def _write(
        self,
        spans: Sequence[SpanRecord],
        logs: Sequence[LogRecord],
        metrics: Sequence[tuple[float, Mapping[str, Mapping[Any, float]]]],
    ) -> None:
        if not (spans or logs or metrics):
            return
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            if spans:
                self._write_spans(conn, spans)
            if logs:
                self._write_logs(conn, logs)
            if metrics:
                self._write_metrics(conn, metrics)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _write_spans(self, conn: sqlite3.Connection, spans: Sequence[SpanRecord]) -> None:
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO spans(trace_id, span_id, parent_span_id, name, kind, service,"
            " instance, start_ns, end_ns, status, status_message, route, attributes, events)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    s.trace_id,
                    s.span_id,
                    s.parent_span_id,
                    s.name,
                    s.kind,
                    s.service,
                    s.instance,
                    s.start_ns,
                    s.end_ns,
                    s.status,
                    s.status_message,
                    _route(s.attributes),
                    orjson.dumps(s.attributes, default=str).decode(),
                    orjson.dumps(s.events, default=str).decode(),
                )
                for s in spans
            ],
        )
        fresh = conn.total_changes - before == len(spans)
        touched = sorted({s.trace_id for s in spans})
        first: dict[tuple[str, str], int] = {}
        for s in spans:
            key = (s.service, s.trace_id)
            first[key] = min(first.get(key, s.start_ns), s.start_ns)
        conn.executemany(
            "INSERT INTO trace_services(service, trace_id, start_ns) VALUES (?, ?, ?)"
            " ON CONFLICT DO UPDATE SET start_ns = min(start_ns, excluded.start_ns)",
            [(service, trace, start) for (service, trace), start in sorted(first.items())],
        )
        if fresh:
            self._merge_traces(conn, spans, touched)
        else:  # some were sent before (an exporter's retry): count from the table
            ids = {"ids": json.dumps(touched)}
            conn.execute(_REBUILD_TRACES, ids)
            conn.execute(_ROOT_FIELDS, ids)

    def _merge_traces(
        self, conn: sqlite3.Connection, spans: Sequence[SpanRecord], touched: list[str]
    ) -> None:
        """The summaries of the traces these new spans belong to, merged in Python with
        what is stored (one indexed read per batch): rebuilding them from every span in
        SQL cost half of the ingest time. The root is the span without a parent, else
        (until it arrives) the earliest span; the route is the earliest span's that has
        one (a gateway's span has none: the service's route names the request)."""
        rows = conn.execute(
            "SELECT trace_id, start_ns, end_ns, span_count, errors, root_span_id, name, service,"
            " route, complete, root_start_ns, route_start_ns FROM traces"
            " WHERE trace_id IN (SELECT value FROM json_each(?))",
            (json.dumps(touched),),
        ).fetchall()
        merged: dict[str, list[Any]] = {row[0]: list(row) for row in rows}
        for s in spans:
            entry = merged.get(s.trace_id)
            if entry is None:
                entry = merged[s.trace_id] = [s.trace_id, s.start_ns, s.end_ns, 0, 0, None]
                entry += [None, None, None, 0, None, None]
            entry[1] = min(entry[1], s.start_ns)
            entry[2] = max(entry[2], s.end_ns)
            entry[3] += 1
            entry[4] += s.status == "error"
            is_root = s.parent_span_id is None
            if (
                entry[5] is None
                or (is_root and not entry[9])
                or (is_root == bool(entry[9]) and s.start_ns < entry[10])
            ):
                entry[5:8] = [s.span_id, s.name, s.service]
                entry[9:11] = [is_root, s.start_ns]
            route = _route(s.attributes)
            if route is not None and (entry[11] is None or s.start_ns < entry[11]):
                entry[8], entry[11] = route, s.start_ns  # the outermost route: the gateway has none
        conn.executemany(
            "INSERT OR REPLACE INTO traces(trace_id, start_ns, end_ns, span_count, errors,"
            " root_span_id, name, service, route, complete, root_start_ns, route_start_ns)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            list(merged.values()),
        )

    def _write_logs(self, conn: sqlite3.Connection, logs: Sequence[LogRecord]) -> None:
        rows = []
        for record in logs:
            level, trace_id = _log_fields(record.line)
            if level is None and record.stream == "stderr" and not record.line.startswith("{"):
                level = None  # plain stderr: a traceback or a warning, rank unknown
            rows.append(
                (
                    record.t,
                    record.service,
                    record.instance,
                    record.stream,
                    level,
                    trace_id,
                    record.line,
                )
            )
        first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM logs").fetchone()[0]
        conn.executemany(
            "INSERT INTO logs(id, t, service, instance, stream, level, trace_id, line)"
            " VALUES (?,?,?,?,?,?,?,?)",
            [(first + i, *row) for i, row in enumerate(rows)],
        )
        conn.execute(
            "INSERT INTO logs_fts(rowid, line) SELECT id, line FROM logs WHERE id >= ?", (first,)
        )

    def _write_metrics(
        self,
        conn: sqlite3.Connection,
        rounds: Sequence[tuple[float, Mapping[str, Mapping[Any, float]]]],
    ) -> None:
        sums: dict[tuple[str, float, str], float] = {}
        for t, deltas in rounds:
            bucket = t - t % FINE_STEP
            for service, values in deltas.items():
                for key, value in values.items():
                    name = key if isinstance(key, str) else json.dumps(list(key))
                    slot = (service, bucket, name)
                    sums[slot] = sums.get(slot, 0.0) + value
        conn.executemany(
            "INSERT INTO metrics(service, key, bucket, step, value) VALUES (?,?,?,?,?)"
            " ON CONFLICT DO UPDATE SET value = value + excluded.value",
            [(s, k, b, FINE_STEP, v) for (s, b, k), v in sums.items()],
        )

    # --- retention (the writer thread, or a test) -----------------------------------

    def size(self) -> int:
        """Bytes the data takes (pages in use, not the free ones awaiting vacuum)."""
        conn = self._writer
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        wal = Path(str(self.path) + "-wal")
        extra = wal.stat().st_size if wal.exists() else 0
        return int((pages - free) * conn.execute("PRAGMA page_size").fetchone()[0]) + extra

    def retain(self, *, now: float | None = None) -> None:
        """Drop what is older than ``keep``, roll fine metrics older than an hour into
        coarse buckets, and trim the oldest tenth while over ``max_bytes`` or the disk
        is nearly full."""
        now = self._clock() if now is None else now
        conn = self._writer
        horizon = now - self.keep
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._drop_spans_before(conn, int(horizon * 1e9))
            self._drop_logs_through(
                conn, conn.execute("SELECT max(id) FROM logs WHERE t < ?", (horizon,)).fetchone()[0]
            )
            conn.execute("DELETE FROM metrics WHERE bucket < ?", (horizon,))
            self._roll_up(conn, now - _FINE_FOR)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        for _ in range(20):
            free = shutil.disk_usage(self.path.parent).free
            over = self.size() > self.max_bytes
            if not over and free >= _LOW_DISK:
                break
            if not over:
                self._warn(
                    f"the disk holding {self.path.parent} has {free // 2**20} MiB free: "
                    "dropping the oldest telemetry early"
                )
            if not self._trim_oldest(conn):
                break
        conn.execute("PRAGMA incremental_vacuum")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _drop_spans_before(self, conn: sqlite3.Connection, start_ns: int) -> None:
        """Whole traces that started before ``start_ns`` go, every span of them."""
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS gone(trace_id TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM gone")
        conn.execute("INSERT INTO gone SELECT trace_id FROM traces WHERE start_ns < ?", (start_ns,))
        for table in ("spans", "trace_services", "traces"):
            conn.execute(f"DELETE FROM {table} WHERE trace_id IN (SELECT trace_id FROM gone)")  # noqa: S608 - fixed names

    def _drop_logs_through(self, conn: sqlite3.Connection, last_id: int | None) -> None:
        if last_id is None:
            return
        # External-content FTS5: the index entries go first, read from the rows they index.
        conn.execute(
            "INSERT INTO logs_fts(logs_fts, rowid, line)"
            " SELECT 'delete', id, line FROM logs WHERE id <= ?",
            (last_id,),
        )
        conn.execute("DELETE FROM logs WHERE id <= ?", (last_id,))

    def _roll_up(self, conn: sqlite3.Connection, before: float) -> None:
        conn.execute(
            "INSERT INTO metrics(service, key, bucket, step, value)"
            " SELECT service, key, bucket - (bucket % :step), :step, sum(value) FROM metrics"
            " WHERE step < :step AND bucket < :before"
            " GROUP BY service, key, bucket - (bucket % :step)"
            " ON CONFLICT DO UPDATE SET value = value + excluded.value",
            {"step": COARSE_STEP, "before": before - before % COARSE_STEP},
        )
        conn.execute(
            "DELETE FROM metrics WHERE step < ? AND bucket < ?",
            (COARSE_STEP, before - before % COARSE_STEP),
        )

    def _trim_oldest(self, conn: sqlite3.Connection) -> bool:
        """Drop the oldest tenth of spans and of logs; False when nothing is left."""
        spans = conn.execute("SELECT count(*) FROM traces").fetchone()[0]
        logs = conn.execute("SELECT count(*) FROM logs").fetchone()[0]
        if not spans and not logs:
            return False
        conn.execute("BEGIN IMMEDIATE")
        try:
            if spans:
                cut = conn.execute(
                    "SELECT start_ns FROM traces ORDER BY start_ns LIMIT 1 OFFSET ?",
                    (max(spans // 10, 1) - 1,),
                ).fetchone()[0]
                self._drop_spans_before(conn, cut + 1)
            if logs:
                first = conn.execute("SELECT min(id) FROM logs").fetchone()[0]
                self._drop_logs_through(conn, first + max(logs // 10, 1) - 1)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("PRAGMA incremental_vacuum")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return True


def _red_of(values: Mapping[str, float], seconds: float, keys: dict[str, Any]) -> dict[str, Any]:
    """RED of one step's stored increments (keys as :meth:`_write_metrics` wrote them:
    JSON lists of the window's key tuples; ``keys`` caches their parsing)."""
    totals: dict[Any, float] = {}
    for name, value in values.items():
        key = keys.get(name)
        if key is None:
            key = keys[name] = tuple(orjson.loads(name)) if name.startswith("[") else ()
        if key:
            totals[key] = value
    return overall_red(totals, seconds)


def _trace_summary(row: Sequence[Any]) -> dict[str, Any]:
    trace_id, start, end, count, errors, name, service, route, complete, services = row
    return {
        "trace_id": trace_id,
        "name": name,
        "service": service,
        "route": route,
        "start": start / 1e9,
        "duration_ms": round((end - start) / 1e6, 3),
        "span_count": count,
        "services": sorted((services or "").split(",")) if services else [],
        "errors": errors,
        "complete": bool(complete),
        "dropped": 0,
    }


def _span_json(row: Sequence[Any]) -> dict[str, Any]:
    (
        trace_id,
        span_id,
        parent,
        name,
        kind,
        service,
        instance,
        start,
        end,
        status,
        message,
        attributes,
        events,
    ) = row
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "kind": kind,
        "service": service,
        "instance": instance,
        "start": start / 1e9,
        "end": end / 1e9,
        "duration_ms": round((end - start) / 1e6, 3),
        "status": status,
        "status_message": message,
        "attributes": orjson.loads(attributes),
        "events": orjson.loads(events),
    }


def log_records(lines: Iterable[Any]) -> list[LogRecord]:
    """Anything with the fields of a log line -> records (the runtime's ``LogLine``)."""
    return [LogRecord(x.t, x.service, x.instance, x.stream, x.line) for x in lines]
