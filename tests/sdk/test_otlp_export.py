"""The span export path: the queue processor (bounded, drops counted and reported once,
flush, fork), the lean server span (the SDK's span, sampler honoured) and the lean
exporter posting what a standard OTLP decoder reads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode

from corral.sdk import _secrets
from corral.sdk._span_export import LeanOTLPSpanExporter, QueueSpanProcessor
from corral.sdk._span_server import ServerSpan, ServerSpans
from corral.sdk._tracing import PROPAGATOR


class Gate(SpanExporter):
    """Keeps every batch; blocks export until ``opened`` is set (a stalled collector)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.batches: list[list[ReadableSpan]] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.opened.wait(30)
        self.batches.append(list(spans))
        return SpanExportResult.SUCCESS


def spans_of(provider: TracerProvider, count: int) -> None:
    tracer = provider.get_tracer("burst")
    for i in range(count):
        tracer.start_span(f"s{i}").end()


def test_a_burst_past_the_queue_is_dropped_counted_and_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stalled exporter and a burst of 5,000 spans: the queue holds its bound (100), the
    rest are counted as dropped, one warning says so (not a line per span), and what was
    queued is exported once the exporter moves again."""
    gate = Gate()
    processor = QueueSpanProcessor(gate, max_queue_size=100, max_export_batch_size=10)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    spans_of(provider, 1)  # woken by the timer or not, the thread soon blocks in export
    with caplog.at_level(logging.WARNING, logger="corral.sdk._span_export"):
        spans_of(provider, 5_000)
        assert len(processor._queue) <= 100
        assert processor.dropped >= 5_000 - 100 - 10
        gate.opened.set()
        assert provider.force_flush(10_000)
    exported = sum(len(b) for b in gate.batches)
    assert exported + processor.dropped == 5_001
    assert all(len(b) <= 10 for b in gate.batches)
    reports = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(reports) == 1
    assert str(processor.dropped) in reports[0].getMessage()
    provider.shutdown()


def test_flush_exports_what_was_queued_and_shutdown_stops_the_thread() -> None:
    exporter = InMemorySpanExporter()
    processor = QueueSpanProcessor(exporter, schedule_delay_millis=60_000)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    spans_of(provider, 3)
    assert provider.force_flush(10_000)
    assert [s.name for s in exporter.get_finished_spans()] == ["s0", "s1", "s2"]
    provider.shutdown()
    assert not processor._thread.is_alive()


def test_unsampled_spans_are_not_queued() -> None:
    exporter = InMemorySpanExporter()
    processor = QueueSpanProcessor(exporter)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    parent = PROPAGATOR.extract({"traceparent": f"00-{'1' * 32}-{'2' * 16}-00"})
    provider.get_tracer("t").start_span("child", context=parent).end()
    ServerSpans(provider.get_tracer("t")).start("GET", parent).end()  # type: ignore[arg-type]
    provider.force_flush(10_000)
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


def test_bad_queue_settings_in_the_environment_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "lots")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "-3")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "250")
    processor = QueueSpanProcessor(InMemorySpanExporter())
    assert (processor.max_queue_size, processor.max_export_batch_size) == (16_384, 2_048)
    assert processor._delay_s == 0.25
    processor.shutdown()


def server_span_pair(**provider_args: Any) -> tuple[Any, Any]:
    """The same request's span made by the SDK tracer and by ServerSpans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "s"}), **provider_args)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("corral.sdk")
    return tracer, exporter


def test_the_lean_server_span_is_the_sdk_span_the_tracer_would_make() -> None:
    """Same class family, ids from the parent, flags, trace state, resource, scope, kind,
    and attributes, events and status as user code sets them through the API."""
    tracer, exporter = server_span_pair()
    parent = PROPAGATOR.extract(
        {"traceparent": f"00-{'a' * 32}-{'b' * 16}-01", "tracestate": "v=1"}
    )
    sdk = tracer.start_span("GET", context=parent, kind=SpanKind.SERVER)
    lean = ServerSpans(tracer).start("GET", parent)  # type: ignore[arg-type]
    assert isinstance(lean, ServerSpan)
    assert isinstance(lean, Span)
    for span in (sdk, lean):
        span.set_attribute("user.id", 7)
        span.set_attribute("bad", object())  # type: ignore[arg-type]  # dropped by the SDK
        span.add_event("decided", {"retry": True})
        span.record_exception(ValueError("x"))
    sdk.update_name("GET /r")
    sdk.set_attributes({"http.request.method": "GET", "http.route": "/r"})
    sdk.set_attribute("http.response.status_code", 503)
    sdk.set_status(StatusCode.ERROR)
    sdk.end()
    lean.finish("GET /r", "GET", "/r", 503)
    lean.set_attribute("late", 1)  # refused after end, as the SDK refuses it
    made, ours = exporter.get_finished_spans()
    a, b = made.get_span_context(), ours.get_span_context()
    assert (a.trace_id, a.trace_flags, a.trace_state, a.is_remote) == (
        b.trace_id,
        b.trace_flags,
        b.trace_state,
        b.is_remote,
    )
    assert a.span_id != b.span_id
    for field in ("name", "kind", "parent", "resource", "instrumentation_scope"):
        assert getattr(made, field) == getattr(ours, field), field
    assert dict(made.attributes or {}) == dict(ours.attributes or {})
    assert [e.name for e in made.events] == [e.name for e in ours.events]
    assert made.status.status_code == ours.status.status_code == StatusCode.ERROR


def test_a_root_lean_span_gets_the_flags_the_sdk_gives() -> None:
    tracer, _ = server_span_pair()
    sdk = tracer.start_span("GET", kind=SpanKind.SERVER).get_span_context()
    lean = ServerSpans(tracer).start("GET", None).get_span_context()  # type: ignore[arg-type]
    assert lean.trace_flags == sdk.trace_flags
    assert lean.is_valid
    assert lean.trace_id != sdk.trace_id


def test_a_configured_sampler_decides_for_lean_spans() -> None:
    """OTEL_TRACES_SAMPLER's choice (here: ratio 0) holds for the middleware's span too."""
    tracer, exporter = server_span_pair(sampler=ParentBased(TraceIdRatioBased(0.0)))
    span = ServerSpans(tracer).start("GET", None)  # type: ignore[arg-type]
    assert not span.is_recording()
    assert not span.get_span_context().trace_flags.sampled
    span.end()
    assert exporter.get_finished_spans() == ()


class Collector:
    """A real OTLP/HTTP endpoint keeping the decoded requests and their headers."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                outer.requests.append(ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_the_lean_exporter_posts_standard_otlp_with_the_configured_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTEL_EXPORTER_OTLP_* still apply (endpoint, headers); the body decodes with the
    standard protos; a secret in a span is not in the body."""
    monkeypatch.setattr(_secrets, "SECRET_FORMS", [])
    _secrets.register_secrets(["hunter2-secret"])
    collector = Collector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=blue")
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "lean"}))
        provider.add_span_processor(QueueSpanProcessor(LeanOTLPSpanExporter()))
        tracer = provider.get_tracer("corral.sdk")
        span = ServerSpans(tracer).start("GET", None)  # type: ignore[arg-type]
        span.set_attribute("q", "token=hunter2-secret")
        span.finish("GET /x", "GET", "/x", 200)  # type: ignore[attr-defined]
        assert provider.force_flush(10_000)
        provider.shutdown()
    finally:
        collector.server.shutdown()
    assert collector.headers[0]["x-tenant"] == "blue"
    assert collector.headers[0]["content-type"] == "application/x-protobuf"
    (sent,) = [
        s
        for r in collector.requests
        for rs in r.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    assert sent.name == "GET /x"
    attributes = {kv.key: kv.value for kv in sent.attributes}
    assert attributes["q"].string_value == f"token={_secrets.REDACTED}"
    assert attributes["http.response.status_code"].int_value == 200
    assert sent.kind == sent.SPAN_KIND_SERVER


async def test_a_service_exports_its_request_spans_through_the_lean_path() -> None:
    """Through a real service with an OTLP endpoint: the middleware's span is the lean
    one, a span the handler makes is its child, and what the collector decodes holds the
    route name, the HTTP attributes, the 500's error status and the exception event."""
    from corral import contract
    from corral.sdk import Service
    from corral.sdk.testing import serve_in_process

    svc = Service("lean-spans")
    seen: list[object] = []

    @svc.get("/rides/{ride_id}")
    async def ride(ride_id: str) -> None:
        seen.append(trace.get_current_span())
        with svc.tracer.start_as_current_span("lookup"):
            pass
        raise RuntimeError("no such ride")

    collector = Collector()
    try:
        env = {contract.OTEL_ENDPOINT: collector.url}
        async with serve_in_process(svc, env=env) as client:
            assert (await client.get("/rides/7")).status_code == 500
    finally:
        collector.server.shutdown()
    assert isinstance(seen[0], ServerSpan)
    spans = {
        s.name: s
        for r in collector.requests
        for rs in r.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    }
    server, child = spans["GET /rides/{ride_id}"], spans["lookup"]
    assert server.kind == server.SPAN_KIND_SERVER
    assert child.parent_span_id == server.span_id
    assert child.trace_id == server.trace_id
    attributes = {kv.key: kv.value for kv in server.attributes}
    assert attributes["http.route"].string_value == "/rides/{ride_id}"
    assert attributes["http.request.method"].string_value == "GET"
    assert attributes["http.response.status_code"].int_value == 500
    assert server.status.code == server.status.STATUS_CODE_ERROR
    assert [e.name for e in server.events] == ["exception"]
