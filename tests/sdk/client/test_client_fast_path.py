"""What the client's per-call fast path must keep doing (see docs/design-notes.md,
"Overhead"): counting every call, sending every context header, resetting and opening
the breaker, and not replaying cookies between calls."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    TraceState,
    use_span,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import generate_latest

from corral import contract
from corral.sdk._context import bearer_token_var, request_id_var
from corral.sdk.client import (
    BreakerPolicy,
    CircuitBreaker,
    CircuitState,
    ClientTelemetry,
    Policy,
    RetryPolicy,
    ServiceClient,
    StaticResolver,
    UpstreamError,
)

from .conftest import Upstream


def make(upstream: Upstream, **policy: object) -> ServiceClient:
    return ServiceClient(
        "fault",
        # a host name: aiohttp's default cookie jar ignores cookies of IP addresses
        resolver=StaticResolver({"fault": upstream.url.replace("127.0.0.1", "localhost")}),
        policy=Policy(**policy),  # type: ignore[arg-type]
        telemetry=ClientTelemetry(),
        caller="caller",
    )


async def test_calls_are_counted_and_scraped(upstream: Upstream) -> None:
    """Outcome counts are plain integers read at scrape time: they still reach the
    registry's exposition, per target and outcome."""
    async with make(upstream, retries=RetryPolicy(attempts=1)) as client:
        for _ in range(3):
            await client.get("/work")
        await upstream.mode("fail", status=503)
        with pytest.raises(UpstreamError):
            await client.get("/work")
        registry = client.telemetry.registry
        ok = {"target": "fault", "outcome": "ok"}
        assert registry.get_sample_value("corral_client_calls_total", ok) == 3
        status = {"target": "fault", "outcome": UpstreamError.reason}
        assert registry.get_sample_value("corral_client_calls_total", status) == 1
        text = generate_latest(registry).decode()
    assert 'corral_client_calls_total{outcome="ok",target="fault"} 3.0' in text
    assert 'corral_client_calls_total{outcome="status",target="fault"} 1.0' in text


async def test_every_attempt_carries_the_context_headers(upstream: Upstream) -> None:
    """Without a deadline: the deadline header is the end of the attempt timeout (whole
    milliseconds, rounded down), next to the caller; no cookie comes back."""
    async with make(upstream, timeout=5.0) as client:
        await client.get("/work")
        before = time.time()
        await client.get("/work")
        after = time.time()
    headers = {k.lower(): v for k, v in (await upstream.stats())["last"]["headers"].items()}
    sent = float(headers[contract.DEADLINE_HEADER])
    assert before + 5.0 - 1e-3 <= sent <= after + 5.0
    assert headers[contract.CALLER_HEADER] == "caller"
    # the first answer set a cookie; one session serves every user's calls, so it is
    # not sent back
    assert "cookie" not in headers


@pytest.mark.parametrize("state", [None, TraceState([("vendor", "v1"), ("other", "x")])])
async def test_trace_context_matches_the_propagator(
    upstream: Upstream, state: TraceState | None
) -> None:
    """The hand-written traceparent/tracestate are what OpenTelemetry's W3C propagator
    writes (flags, small ids with leading zeros, a trace state or none), and the request
    id goes along."""
    span = NonRecordingSpan(
        SpanContext(
            trace_id=0x1F,
            span_id=0x2A,
            is_remote=False,
            trace_flags=TraceFlags(1),
            trace_state=state,
        )
    )
    expected: dict[str, str] = {}
    token = request_id_var.set("req-1")
    try:
        async with make(upstream) as client:
            with use_span(span):
                TraceContextTextMapPropagator().inject(expected)
                await client.get("/work")
    finally:
        request_id_var.reset(token)
    headers = {k.lower(): v for k, v in (await upstream.stats())["last"]["headers"].items()}
    assert headers["traceparent"] == expected["traceparent"]
    assert headers.get("tracestate") == expected.get("tracestate")
    assert (state is None) == ("tracestate" not in headers)
    assert headers[contract.REQUEST_ID_HEADER] == "req-1"


async def test_tracing_on_wraps_the_call_in_a_client_span(upstream: Upstream) -> None:
    """With a tracer the call is a CLIENT span, current while the request goes out (the
    coroutine made before the span starts runs inside it)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with make(upstream) as client:
        client.tracer = provider.get_tracer("test")
        response = await client.get("/work")
    assert response.status_code == 200
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET fault"
    assert span.kind is SpanKind.CLIENT
    assert span.attributes == {"corral.target": "fault", "http.response.status_code": 200}
    headers = {k.lower(): v for k, v in (await upstream.stats())["last"]["headers"].items()}
    assert span.context is not None
    assert headers["traceparent"].split("-")[2] == format(span.context.span_id, "016x")


def test_breaker_success_resets_and_failures_still_open() -> None:
    """The closed-state success shortcut resets the consecutive count like _record()."""
    changes: list[CircuitState] = []
    breaker = CircuitBreaker(
        "t",
        BreakerPolicy(consecutive_failures=3),
        on_change=lambda _t, _old, new, _why: changes.append(new),
    )
    for outcome in (False, False, True, False, False):
        assert breaker.acquire(1.0) is False
        breaker.release(False, outcome)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.consecutive == 2
    breaker.release(breaker.acquire(1.0), False)
    assert breaker.state is CircuitState.OPEN
    assert changes == [CircuitState.OPEN]


def test_verbs_mock_as_async() -> None:
    """The verbs return coroutines without being ``async def``; mocks still treat them as
    async, so users' tests can ``await`` a mocked client."""
    import inspect
    from unittest.mock import AsyncMock, create_autospec

    for verb in ("get", "post", "put", "delete", "request"):
        assert inspect.iscoroutinefunction(getattr(ServiceClient, verb)), verb
    mocked = create_autospec(ServiceClient, instance=True)
    assert isinstance(mocked.get, AsyncMock)
    assert isinstance(AsyncMock(spec=ServiceClient).post, AsyncMock)


async def test_a_wrapped_call_dropped_before_it_starts_warns_nothing(upstream: Upstream) -> None:
    """A call with a fallback that is never awaited (its task cancelled before it ran)
    leaves no inner coroutine behind to warn "was never awaited"."""
    import gc
    import warnings

    async with make(upstream) as client:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call = client.get("/work", fallback=lambda exc: None)
            call.close()
            del call
            gc.collect()
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


async def test_response_reads_as_httpx_and_status_is_a_deprecated_alias(
    upstream: Upstream,
) -> None:
    """``status_code`` and ``is_success`` read as httpx's; the old ``status`` still
    answers, with a DeprecationWarning naming its replacement."""
    async with make(upstream) as client:
        response = await client.get("/work")
    assert response.status_code == 200
    assert response.is_success
    with pytest.warns(DeprecationWarning, match="status_code"):
        assert response.status == 200


async def test_the_verified_caller_token_goes_along_unless_told_otherwise(
    upstream: Upstream,
) -> None:
    """Inside a request whose bearer token verified, calls forward it (the callee sees the
    same caller); a header the call sets itself wins; ``forward_identity=False`` sends
    none."""
    token = bearer_token_var.set("tok-1")
    try:
        async with make(upstream) as client:
            await client.get("/work")
            forwarded = (await upstream.stats())["last"]["headers"]
            await client.get("/work", headers={"Authorization": "Bearer mine"})
            own = (await upstream.stats())["last"]["headers"]
        async with ServiceClient(
            "fault",
            resolver=StaticResolver({"fault": upstream.url}),
            policy=Policy(),
            telemetry=ClientTelemetry(),
            forward_identity=False,
        ) as quiet:
            await quiet.get("/work")
            withheld = (await upstream.stats())["last"]["headers"]
    finally:
        bearer_token_var.reset(token)
    lower = [{k.lower(): v for k, v in h.items()} for h in (forwarded, own, withheld)]
    assert lower[0]["authorization"] == "Bearer tok-1"
    assert lower[1]["authorization"] == "Bearer mine"
    assert "authorization" not in lower[2]
