"""The hand-written OTLP encoder writes what the official one writes: both outputs decode
with ``opentelemetry-proto`` to equal messages, and the bytes are the same."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as official
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from corral.sdk import _secrets
from corral.sdk._otlp_encode import encode_spans
from corral.sdk._span_redaction import redact_span


@pytest.fixture(autouse=True)
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets other tests in this process registered would be redacted here."""
    monkeypatch.setattr(_secrets, "SECRET_FORMS", [])


EVERY_TYPE = {
    "str": "value ü ☃",
    "empty": "",
    "true": True,
    "false": False,
    "int": 42,
    "zero": 0,
    "negative": -7,
    "big": 2**62,
    "min": -(2**63),
    "float": 3.25,
    "negative_float": -0.5,
    "strs": ("a", "b", ""),
    "ints": (1, -2, 3),
    "floats": (1.5, 2.0),
    "bools": (True, False),
    "empty_list": (),
}


def assert_same(spans: list[ReadableSpan]) -> None:
    expected = official(spans)
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert ours == expected
    assert encode_spans(spans) == expected.SerializeToString()


def recorded(
    limits: SpanLimits | None = None, **resource: str
) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "svc", **resource}), span_limits=limits
    )
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_spans_with_every_attribute_type_events_links_and_status() -> None:
    provider, exporter = recorded(**{"service.instance.id": "svc-1"})
    tracer = provider.get_tracer("corral.sdk", "1.2.3", schema_url="https://example.com/s")
    remote = SpanContext(0xABC, 0xDEF, True, TraceFlags(1), TraceState([("k", "v"), ("a", "b")]))
    local = SpanContext(0x1234, 0x5678, False, TraceFlags(0))
    from opentelemetry import trace

    parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    with tracer.start_as_current_span(
        "GET /rides/{id}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes=EVERY_TYPE,
        links=[Link(local, {"why": "batch"}), Link(remote)],
    ) as server:
        server.add_event("retry", {"attempt": 2, "delay_s": 0.25})
        server.add_event("empty")
        with tracer.start_as_current_span("GET matching", kind=SpanKind.CLIENT) as client:
            client.set_status(Status(StatusCode.ERROR, "boom"))
        try:
            raise ValueError("bad ride")
        except ValueError as exc:
            server.record_exception(exc)
        server.set_status(StatusCode.OK)
    other = provider.get_tracer("corral.sdk.events")
    for kind in (SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL):
        with other.start_as_current_span(f"publish {kind.name}", kind=kind):
            pass
    assert_same(list(exporter.get_finished_spans()))


def test_several_resources_and_scopes_keep_their_grouping() -> None:
    a, exported_a = recorded(**{"service.instance.id": "a"})
    b, exported_b = recorded(**{"service.instance.id": "b"})
    for provider in (a, b, a):
        for scope in ("one", "two", "one"):
            with provider.get_tracer(scope).start_as_current_span(scope):
                pass
    spans = [*exported_a.get_finished_spans(), *exported_b.get_finished_spans()]
    spans.insert(1, spans.pop())  # interleave the resources
    assert_same(spans)


def test_dropped_counts_and_odd_spans() -> None:
    provider, exporter = recorded(SpanLimits(max_span_attributes=2, max_events=1, max_links=1))
    tracer = provider.get_tracer("limits")
    links = [Link(SpanContext(1, 2, False)), Link(SpanContext(3, 4, True))]
    with tracer.start_as_current_span("", links=links) as span:
        span.set_attributes({"a": 1, "b": 2, "c": 3})
        span.add_event("one")
        span.add_event("two")
    assert_same(list(exporter.get_finished_spans()))
    # Built directly: no scope, no times, a trace state-free context, a huge attribute.
    bare = ReadableSpan(
        name="x" * 20_000,
        context=SpanContext(2**128 - 1, 2**64 - 1, False),
        attributes={"big": "y" * 70_000, "none_like": ()},
        events=[Event("e", {"n": 1}, timestamp=0)],
        instrumentation_scope=InstrumentationScope("s", None, None, None),
    )
    assert_same([bare])
    assert_same([])


def test_the_attribute_cache_tells_equal_values_of_different_types_apart() -> None:
    provider, exporter = recorded()
    tracer = provider.get_tracer("cache")
    for value in (1, True, 1.0, "1", 1, True):
        with tracer.start_as_current_span("s", attributes={"v": value}):
            pass
    assert_same(list(exporter.get_finished_spans()))


def test_known_secrets_are_redacted_as_spans_are_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """With secrets registered, the bytes are the official encoding of the redacted copies
    corral.sdk._span_redaction makes (names, attributes, events, links, status), and a
    secret registered later is redacted too, even in a value encoded before."""
    provider, exporter = recorded()
    tracer = provider.get_tracer("secrets")

    def spans() -> list[ReadableSpan]:
        exporter.clear()
        with tracer.start_as_current_span(
            "GET /tok-early",
            attributes={"url": "http://x/?t=tok-early", "later": "tok-later", "n": 1},
            links=[Link(SpanContext(5, 6, False), {"why": "tok-early"})],
        ) as span:
            span.add_event("tok-later seen", {"list": ("tok-early", "ok")})
            span.set_status(Status(StatusCode.ERROR, "failed with tok-early"))
        return list(exporter.get_finished_spans())

    monkeypatch.setattr(_secrets, "SECRET_FORMS", [])
    assert b"tok-later" in encode_spans(spans())  # encoded (and cached) before it is secret
    _secrets.register_secrets(["tok-early"])
    first = spans()
    assert encode_spans(first) == official([redact_span(s) for s in first]).SerializeToString()
    assert b"tok-later" in encode_spans(first)
    _secrets.register_secrets(["tok-later"])
    second = spans()
    body = encode_spans(second)
    assert body == official([redact_span(s) for s in second]).SerializeToString()
    assert b"tok-early" not in body
    assert b"tok-later" not in body
    assert _secrets.REDACTED.encode() in body
