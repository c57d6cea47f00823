"""Traces: W3C traceparent in and out, export off without an endpoint."""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanContext, TraceState

from corral import contract
from corral.sdk import Service, _middleware, current_trace_id, inject_trace_headers
from corral.sdk._tracing import PROPAGATOR
from corral.sdk.testing import capture_logs, serve_in_process

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def make_service() -> Service:
    svc = Service("traced")

    @svc.get("/outgoing")
    async def outgoing() -> dict[str, str | None]:
        headers = dict(inject_trace_headers())
        return {**headers, "current": current_trace_id()}

    return svc


async def test_incoming_traceparent_continues_the_trace() -> None:
    """A request with traceparent is handled in that trace; its logs carry the trace id."""
    with capture_logs() as logs:
        async with serve_in_process(make_service()) as client:
            response = await client.get("/outgoing", headers={"traceparent": PARENT})
    body = response.json()
    assert body["current"] == TRACE_ID
    access = next(line for line in logs if line["event"] == "request")
    assert access["trace_id"] == TRACE_ID


async def test_outgoing_headers_carry_trace_request_id_and_caller() -> None:
    """inject_trace_headers adds a child traceparent, the request id and the caller name."""
    async with serve_in_process(make_service()) as client:
        response = await client.get(
            "/outgoing", headers={"traceparent": PARENT, "x-request-id": "r-1"}
        )
    body = response.json()
    version, trace_id, span_id, flags = body["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert span_id != "00f067aa0ba902b7"
    assert body[contract.REQUEST_ID_HEADER] == "r-1"
    assert body[contract.CALLER_HEADER] == "traced"


async def test_new_trace_without_incoming_header() -> None:
    """Without traceparent each request starts its own trace."""
    async with serve_in_process(make_service()) as client:
        first = (await client.get("/outgoing")).json()["current"]
        second = (await client.get("/outgoing")).json()["current"]
    assert first
    assert second
    assert first != second


async def test_export_is_off_without_endpoint() -> None:
    """No OTLP endpoint: no span processor is installed, so nothing tries to connect."""
    svc = make_service()
    async with serve_in_process(svc, env={contract.OTEL_ENDPOINT: None}):
        processors = svc._tracer_provider._active_span_processor._span_processors
    assert processors == ()


async def test_export_to_otlp_http_when_endpoint_is_set() -> None:
    """With an endpoint, spans are posted over OTLP/HTTP to <endpoint>/v1/traces."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    paths: list[str] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            paths.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        svc = make_service()
        async with serve_in_process(svc, env={contract.OTEL_ENDPOINT: endpoint}) as client:
            await client.get("/outgoing")
        # stop() flushed the batch processor before returning.
    finally:
        server.shutdown()
    assert "/v1/traces" in paths


def test_light_spans_carry_the_context_otel_would_build() -> None:
    """The unchecked SpanContext of light spans is in use and equals OTel's own, for a
    new trace and under a parent with trace state."""
    assert _middleware._span_context is _middleware._valid_span_context
    fresh = _middleware._light_span(None).get_span_context()
    assert fresh == SpanContext(fresh.trace_id, fresh.span_id, False, fresh.trace_flags, None)
    assert fresh.is_valid
    assert fresh.trace_flags.sampled
    assert not fresh.is_remote
    parent = PROPAGATOR.extract({"traceparent": PARENT, "tracestate": "vendor=x"})
    child = _middleware._light_span(parent).get_span_context()
    assert format(child.trace_id, "032x") == TRACE_ID
    assert child.trace_state == TraceState([("vendor", "x")])
    assert child == SpanContext(
        child.trace_id, child.span_id, False, child.trace_flags, child.trace_state
    )


async def test_the_request_context_keeps_what_was_current_and_is_restored() -> None:
    """The span is added to a copy of the current OTel context (its values stay visible in
    the handler) and the previous context is current again afterwards."""
    assert _middleware._CURRENT_CONTEXT is not None  # the direct ContextVar path is tested
    svc = Service("contexts")
    key = otel_context.create_key("outer")

    @svc.get("/seen")
    async def seen() -> dict[str, object]:
        return {"outer": otel_context.get_value(key), "trace": current_trace_id()}

    token = otel_context.attach(otel_context.set_value(key, "kept"))
    try:
        before = otel_context.get_current()
        async with serve_in_process(svc) as client:
            response = await client.get("/seen", headers={"traceparent": PARENT})
        assert otel_context.get_current() == before
    finally:
        otel_context.detach(token)
    assert response.json() == {"outer": "kept", "trace": TRACE_ID}
