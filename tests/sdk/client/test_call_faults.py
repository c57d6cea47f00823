"""Caller-side chaos faults in the SDK client (``corral chaos calls``): what the feed's
events become, and how a faulted call meets the resilience policy, against a real
upstream process that must see nothing of an aborted attempt."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from corral import contract
from corral.sdk import Service
from corral.sdk.client import (
    BreakerPolicy,
    BulkheadFullError,
    BulkheadPolicy,
    CircuitState,
    RetryPolicy,
    ServiceCallError,
    ServiceClient,
    UpstreamError,
    UpstreamTimeoutError,
)
from corral.sdk.client._faults import CallFault, FaultFeed, faults_from
from testkit import free_port

from .conftest import Upstream

RETRY_3 = RetryPolicy(attempts=3, initial=0.001, max=0.002, budget_ratio=10.0)


def fault(**overrides: Any) -> CallFault:
    values: dict[str, Any] = {
        "id": "chaos-1",
        "target": "fault",
        "percent": 100,
        "abort_status": 503,
        "delay": 0.0,
        "until": time.time() + 60,
    }
    return CallFault(**{**values, **overrides})


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` on the loop (testkit's wait_for blocks the thread)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def injected(client: ServiceClient) -> float:
    value = client.telemetry.registry.get_sample_value(
        "corral_client_faults_injected_total", {"target": "fault"}
    )
    return value or 0.0


def test_feed_events_become_faults_of_this_caller_ending_at_the_earlier_time() -> None:
    """Only this caller's faults, by target; the end is the earlier of expires_at and the
    time left; an expired one is dropped."""
    now = 1000.0
    payload = {
        "faults": [
            {"id": "chaos-1", "caller": "front", "target": "greeter", "percent": 50,
             "abort_status": 503, "delay_ms": None, "expires_at": 1030.0, "remaining": 10.0},
            {"id": "chaos-2", "caller": "front", "target": "pricing", "percent": 100,
             "abort_status": None, "delay_ms": 200, "expires_at": 1005.0, "remaining": 30.0},
            {"id": "chaos-3", "caller": "rides", "target": "greeter", "percent": 100,
             "abort_status": 500, "delay_ms": None, "expires_at": 1030.0, "remaining": 30.0},
            {"id": "chaos-4", "caller": "front", "target": "old", "percent": 100,
             "abort_status": 500, "delay_ms": None, "expires_at": 999.0, "remaining": 0.0},
        ]
    }  # fmt: skip
    faults = faults_from(payload, caller="front", now=now)
    assert faults == {
        "greeter": CallFault("chaos-1", "greeter", 50, 503, 0.0, 1010.0),
        "pricing": CallFault("chaos-2", "pricing", 100, None, 0.2, 1005.0),
    }
    assert faults["greeter"].hits(0.49)
    assert not faults["greeter"].hits(0.5)


async def test_an_abort_is_retried_and_answered_by_the_client_itself(
    upstream: Upstream, make_client: Callable[..., ServiceClient]
) -> None:
    """abort 503 on every call: each of the 3 attempts is faulted (retries react as to a
    real 503), the final error is the upstream error a real 503 gives, with the
    problem+json body; the upstream never sees a request."""
    client = make_client(retries=RETRY_3)
    client.fault = fault()
    with pytest.raises(UpstreamError) as caught:
        await client.get("/work")
    assert caught.value.status == 503
    assert caught.value.attempts == 3
    assert json.loads(caught.value.body or b"{}")["title"] == "injected fault"
    assert injected(client) == 3
    assert await upstream.attempts() == 0


async def test_a_non_5xx_abort_is_returned_as_a_response(
    upstream: Upstream, make_client: Callable[..., ServiceClient]
) -> None:
    """abort 429: a response the caller reads, marked with the experiment's id."""
    client = make_client()
    client.fault = fault(abort_status=429)
    response = await client.get("/work")
    assert response.status_code == 429
    assert response.headers[contract.CHAOS_HEADER] == "chaos-1"
    assert await upstream.attempts() == 0


async def test_aborts_open_the_breaker_like_real_failures(
    upstream: Upstream, make_client: Callable[..., ServiceClient]
) -> None:
    """Three faulted calls open a 3-failure breaker; the fault gone, the fallback keeps
    answering while the circuit is open (the upstream still sees nothing)."""
    client = make_client(
        retries=RetryPolicy(attempts=1), circuit_breaker=BreakerPolicy(consecutive_failures=3)
    )
    client.fault = fault()
    for _ in range(3):
        with pytest.raises(UpstreamError):
            await client.get("/work")
    assert client.breaker is not None
    assert client.breaker.state is CircuitState.OPEN
    client.fault = None
    assert await client.get("/work", fallback=lambda exc: exc.reason) == "circuit_open"
    assert await upstream.attempts() == 0


async def test_a_delay_longer_than_the_attempt_timeout_is_a_timeout(
    upstream: Upstream, make_client: Callable[..., ServiceClient]
) -> None:
    """delay 5s against a 100ms attempt timeout: the attempt times out (as over a slow
    network), nothing reaches the upstream."""
    client = make_client(timeout=0.1, retries=RetryPolicy(attempts=1))
    client.fault = fault(abort_status=None, delay=5.0)
    with pytest.raises(UpstreamTimeoutError):
        await client.get("/work")
    assert await upstream.attempts() == 0


async def test_a_short_delay_then_the_real_call(
    upstream: Upstream, make_client: Callable[..., ServiceClient]
) -> None:
    """delay 10ms, no abort: the real request goes out after it and succeeds."""
    client = make_client(timeout=5.0)
    client.fault = fault(abort_status=None, delay=0.01)
    assert (await client.get("/work")).status_code == 200
    assert injected(client) == 1
    assert await upstream.attempts() == 1


async def test_percent_misses_leave_the_call_alone(
    upstream: Upstream,
    make_client: Callable[..., ServiceClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """percent 30: a roll of 0.5 is not faulted, a roll of 0.2 is."""
    client = make_client(retries=RetryPolicy(attempts=1))
    client.fault = fault(percent=30)
    monkeypatch.setattr(random, "random", lambda: 0.5)
    assert (await client.get("/work")).status_code == 200
    monkeypatch.setattr(random, "random", lambda: 0.2)
    with pytest.raises(UpstreamError):
        await client.get("/work")
    assert await upstream.attempts() == 1


async def test_the_client_ends_an_expired_fault_itself(
    upstream: Upstream, make_client: Callable[..., ServiceClient]
) -> None:
    """A fault past its end (the control plane gone, nobody lifted it) is dropped by the
    client at the next call, which goes out untouched."""
    client = make_client()
    client.fault = fault(until=time.time() - 0.001)
    assert (await client.get("/work")).status_code == 200
    assert client.fault is None
    assert injected(client) == 0


async def test_the_hub_gives_each_client_only_its_targets_fault() -> None:
    """A fault set for greeter reaches the greeter client (also one made later), not
    pricing's; an empty set lifts it."""
    svc = Service("front")
    greeter, pricing = svc.client("greeter"), svc.client("pricing")
    faults = {"greeter": fault(target="greeter")}
    svc._clients.apply_faults(faults)
    assert greeter.fault == faults["greeter"]
    assert pricing.fault is None
    svc._clients._clients.pop("greeter")
    assert svc.client("greeter").fault == faults["greeter"]
    svc._clients.apply_faults({})
    assert svc.client("greeter").fault is None


async def test_the_feed_follows_the_control_plane_stream() -> None:
    """FaultFeed reads the SSE feed (path, caller, discovery token as the API expects)
    and hands over each event's faults; an empty event lifts them."""
    seen: list[Mapping[str, CallFault]] = []
    asked: list[tuple[str, str | None, str | None]] = []
    lift, done = asyncio.Event(), asyncio.Event()

    async def feed(request: web.Request) -> web.StreamResponse:
        asked.append(
            (request.path, request.query.get("caller"), request.headers.get("authorization"))
        )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        one = {"id": "chaos-7", "caller": "front", "target": "greeter", "percent": 100,
               "abort_status": 503, "delay_ms": None, "expires_at": time.time() + 30,
               "remaining": 30}  # fmt: skip
        await response.write(f"event: faults\ndata: {json.dumps({'faults': [one]})}\n\n".encode())
        await lift.wait()
        await response.write(b'event: faults\ndata: {"faults": []}\n\n')
        await done.wait()
        return response

    app = web.Application()
    app.router.add_get(contract.CALL_FAULTS_WATCH_PATH, feed)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    env = {
        contract.DISCOVERY: f"registry+http://127.0.0.1:{port}",
        contract.DISCOVERY_TOKEN: "disc",
    }
    follower = FaultFeed.from_environment(env, caller="front", on_change=seen.append)
    assert follower is not None
    assert FaultFeed.from_environment({}, caller="front", on_change=seen.append) is None
    follower.start()
    try:
        await until(lambda: len(seen) == 1)
        assert seen[0]["greeter"].id == "chaos-7"
        assert asked == [(contract.CALL_FAULTS_WATCH_PATH, "front", "Bearer disc")]
        lift.set()
        await until(lambda: len(seen) == 2)
        assert seen[1] == {}
    finally:
        await follower.stop()
        done.set()
        await runner.cleanup()


def events(span: ReadableSpan) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, dict(e.attributes or {})) for e in span.events]


async def test_resilience_decisions_are_events_on_the_client_span(
    upstream: Upstream, make_client: Callable[..., ServiceClient]
) -> None:
    """One call faulted twice, retried, then given up to a fallback: the chaos faults,
    the retry, the breaker opening and the fallback are events of its CLIENT span; a
    second call rejected by the open breaker carries the rejection."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = make_client(
        retries=RetryPolicy(attempts=2, initial=0.001, max=0.002, budget_ratio=10.0),
        circuit_breaker=BreakerPolicy(consecutive_failures=2),
    )
    client.tracer = provider.get_tracer("test")
    client.fault = fault()
    assert await client.get("/work", fallback=lambda exc: "fallback") == "fallback"
    client.fault = None
    assert await client.get("/work", fallback=lambda exc: "fallback") == "fallback"
    first, second = exporter.get_finished_spans()
    names = [name for name, _ in events(first)]
    assert names == [
        "corral.client.chaos",
        "corral.client.retry",
        "corral.client.chaos",
        "corral.client.circuit",
        "exception",
        "corral.client.fallback",
    ]
    chaos = events(first)[0][1]
    assert chaos == {
        "target": "fault",
        "experiment": "chaos-1",
        "fault": "abort 503",
        "attempt": 1,
    }
    assert events(first)[3][1]["new"] == "open"
    assert events(first)[5][1] == {"target": "fault", "reason": "status"}
    assert first.status.status_code.name == "ERROR"
    assert [n for n, _ in events(second)] == [
        "corral.client.circuit_rejected",
        "exception",
        "corral.client.fallback",
    ]
    assert await upstream.attempts() == 0


async def test_a_bulkhead_rejection_is_an_event_on_the_client_span(
    upstream: Upstream, make_client: Callable[..., ServiceClient]
) -> None:
    """A full bulkhead with no queue: the rejected call's span says so."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = make_client(bulkhead=BulkheadPolicy(max_concurrent=1, max_queue=0))
    client.tracer = provider.get_tracer("test")
    client.fault = fault(abort_status=None, delay=5.0)  # holds the only slot
    holder = asyncio.create_task(client.get("/work", timeout=10))
    await until(lambda: client.bulkhead is not None and client.bulkhead.active == 1)
    with pytest.raises(BulkheadFullError):
        await client.get("/work")
    holder.cancel()
    with pytest.raises((asyncio.CancelledError, ServiceCallError)):
        await holder
    rejected = [
        [n for n, _ in events(s)]
        for s in exporter.get_finished_spans()
        if "corral.client.bulkhead_rejected" in [n for n, _ in events(s)]
    ]
    assert rejected == [["corral.client.bulkhead_rejected", "exception"]]
