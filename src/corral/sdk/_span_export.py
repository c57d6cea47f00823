"""Span export that costs the request path one deque append.

:class:`QueueSpanProcessor` replaces the SDK's ``BatchSpanProcessor``: its ``on_end``
appends the finished span to a bounded deque (no lock, no condition variable: a
deque's append and popleft are atomic) and wakes the export thread only when a full
batch is waiting; the thread also wakes on a timer and exports what is there. With
:class:`LeanOTLPSpanExporter` the span is encoded in ``on_end`` (about 4 us) and its
bytes are queued: queued span objects survive into the garbage collector's older
generations and made its collections cost more than the encoding (measured in a
service: 8 us a request at load 8, none with the collector off). A full
queue drops the span and counts it (:attr:`QueueSpanProcessor.dropped`); the count is
logged at most every 30 s, never a line per span. Measured (bench/sdk_export_breakdown.py)
the SDK's processor costs about 13-25 us of CPU per request of two spans, this one about
a tenth of that.

:class:`LeanOTLPSpanExporter` is the SDK's OTLP/HTTP exporter (so every
``OTEL_EXPORTER_OTLP_*`` setting, TLS, compression, headers, retries and the endpoint
still apply) with the direct encoder of corral.sdk._otlp_encode in place of the
generated-protobuf one.

The OTEL_BSP_* variables size the queue, the batch and the timer, as they do the SDK's
processor; the defaults differ on purpose: a deeper queue (the SDK's 2,048 drops spans
in ordinary bursts), larger batches (a post costs about 1.5 ms of CPU whatever its size:
2,048 spans, about 400 KB, make it under a microsecond a span) and a one-second timer
(spans reach the dashboard sooner).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from corral.sdk._otlp_encode import Group, encode_request, encode_span, encode_spans, group_of
from corral.sdk._secrets import SECRET_FORMS
from corral.sdk._span_redaction import redact_span

__all__ = ["LeanOTLPSpanExporter", "QueueSpanProcessor"]

_log = logging.getLogger(__name__)

MAX_QUEUE = 16_384
MAX_BATCH = 2_048
DELAY_MS = 1_000
_DROP_REPORT_EVERY_S = 30.0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        _log.warning("%s=%r is not an integer; using %d", name, raw, default)
        return default
    if value <= 0:
        _log.warning("%s=%r must be positive; using %d", name, raw, default)
        return default
    return value


class QueueSpanProcessor(SpanProcessor):
    """Exports sampled spans in batches from a daemon thread; bounded, drops counted."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int | None = None,
        max_export_batch_size: int | None = None,
        schedule_delay_millis: int | None = None,
    ) -> None:
        self.exporter = exporter
        self.max_queue_size = max_queue_size or _env_int("OTEL_BSP_MAX_QUEUE_SIZE", MAX_QUEUE)
        batch = max_export_batch_size or _env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", MAX_BATCH)
        self.max_export_batch_size = min(batch, self.max_queue_size)
        delay = schedule_delay_millis or _env_int("OTEL_BSP_SCHEDULE_DELAY", DELAY_MS)
        self._delay_s = delay / 1000
        self.dropped = 0
        """Spans dropped because the queue was full (since the processor started)."""
        self.exported = 0
        """Spans handed to the exporter."""
        self.unencodable = 0
        self._encoded = isinstance(exporter, LeanOTLPSpanExporter) and exporter._send is not None
        self._reported_dropped = 0
        self._reported_at = 0.0
        self._start()
        # A forked child has the queue but not the thread: start afresh there.
        ref = weakref.ref(self)

        def after_in_child() -> None:
            processor = ref()
            if processor is not None:
                processor._start()

        os.register_at_fork(after_in_child=after_in_child)

    def _start(self) -> None:
        self._queue: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._waiters: list[threading.Event] = []
        self._stopping = False
        # Started by the first span: a provider replaced before serving (the SDK configures
        # telemetry once more as it starts) leaves no idle thread behind.
        self._thread = threading.Thread(target=self._run, name="corral-span-export", daemon=True)
        self._running = False
        self._start_lock = threading.Lock()

    def _run_thread(self) -> None:
        with self._start_lock:  # two threads' first spans must not start it twice
            if not self._running and not self._stopping:
                self._thread.start()
                self._running = True

    # -- the request path ---------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        queue = self._queue
        size = len(queue)
        if size >= self.max_queue_size:
            self.dropped += 1  # racy under threads: a count, not an invariant
            return
        if self._encoded:
            # Encoded now: bytes wait in the queue, not the span's objects, which the
            # garbage collector would otherwise trace again and again (measured: the
            # queued spans' collections cost more than encoding them).
            try:
                queue.append((group_of(span), encode_span(span)))
            except Exception:
                self.unencodable += 1
                if self.unencodable == 1:
                    _log.exception("a span could not be encoded; dropped (reported once)")
        else:
            queue.append(span)
        if size + 1 == self.max_export_batch_size:
            self._wake.set()
        if not self._running:
            self._run_thread()

    # -- the export thread -------------------------------------------------------------
    def _run(self) -> None:
        wake = self._wake
        while not self._stopping:
            woken = wake.wait(self._delay_s)
            wake.clear()
            waiters, self._waiters = self._waiters, []
            # Woken by a full batch: full batches only. By the timer or a flush: all.
            self._drain(everything=not woken or bool(waiters) or self._stopping)
            for waiter in waiters:
                waiter.set()
        self._drain(everything=True)

    def _drain(self, *, everything: bool = True) -> None:
        """Export full batches while there are some, and with ``everything`` what else
        was queued when called.

        Spans that end during a post wait for a full batch or the timer: draining until
        the queue is empty would post a small batch after every post (measured: 126
        spans a post instead of 512 under load, each post costing about 1.4 ms of CPU
        whatever its size)."""
        queue, batch_size = self._queue, self.max_export_batch_size
        pending = len(queue) if everything else 0
        while pending > 0 or len(queue) >= batch_size:
            take = min(pending, batch_size) if pending > 0 else batch_size
            pending -= take
            batch = []
            popleft = queue.popleft
            try:
                for _ in range(take):
                    batch.append(popleft())
            except IndexError:  # emptied meanwhile (a fork): export what we have
                pending = 0
            if not batch:
                break
            try:
                if self._encoded:
                    self.exporter.export_encoded(batch)  # type: ignore[attr-defined]
                else:
                    self.exporter.export(batch)
            except Exception:
                _log.exception("span export failed; %d spans lost", len(batch))
            self.exported += len(batch)
        self._report_drops()

    def _report_drops(self) -> None:
        dropped = self.dropped
        if dropped == self._reported_dropped:
            return
        now = time.monotonic()
        if now - self._reported_at < _DROP_REPORT_EVERY_S and self._reported_dropped:
            return
        _log.warning(
            "span export queue full (%d spans): %d spans dropped since the last report, %d "
            "in all; raise OTEL_BSP_MAX_QUEUE_SIZE or sample (OTEL_TRACES_SAMPLER)",
            self.max_queue_size,
            dropped - self._reported_dropped,
            dropped,
        )
        self._reported_dropped, self._reported_at = dropped, now

    # -- flush and shutdown --------------------------------------------------------------
    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every span queued before this call; False if ``timeout_millis`` passes."""
        if not self._thread.is_alive():
            self._drain()  # never started (no span yet), or shut down
            return True
        done = threading.Event()
        self._waiters.append(done)
        self._wake.set()
        return done.wait(timeout_millis / 1000)

    def shutdown(self) -> None:
        if not self._stopping:
            self._stopping = True
            self._wake.set()
            if self._running:
                self._thread.join(30)
            self._drain()
            self.exporter.shutdown()


class LeanOTLPSpanExporter(OTLPSpanExporter):
    """``OTLPSpanExporter`` encoding with corral.sdk._otlp_encode: the same bytes, a
    seventh of the CPU, every known secret redacted as it is written. It sends through
    the parent's HTTP client (``_client``); should a future SDK drop that, it falls back
    to the parent's own ``export`` of redacted copies (corral.sdk._span_redaction)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._send is None:
            if SECRET_FORMS:
                spans = [redact_span(span) for span in spans]
            return super().export(spans)
        return self._post(encode_spans(spans), len(spans))

    def export_encoded(self, spans: Sequence[tuple[Group, bytes]]) -> SpanExportResult:
        """Export spans :class:`QueueSpanProcessor` encoded as they ended."""
        return self._post(encode_request(spans), len(spans))

    @property
    def _send(self) -> Any:
        if self._shutdown:
            return None
        return getattr(getattr(self, "_client", None), "export", None)

    def _post(self, data: bytes, count: int) -> SpanExportResult:
        send = self._send
        if send is None:
            _log.warning("%d spans dropped: the exporter is shut down", count)
            return SpanExportResult.FAILURE
        limit = getattr(self, "_max_request_size", 0)
        if 0 < limit < len(data):
            _log.warning("%d spans dropped: %d bytes, over %d", count, len(data), limit)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if send(data).success else SpanExportResult.FAILURE
