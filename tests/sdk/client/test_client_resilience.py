"""ServiceClient policies against a real fault-injecting upstream process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import TracerProvider

from corral import contract
from corral.sdk.client import (
    BreakerPolicy,
    BulkheadFullError,
    BulkheadPolicy,
    CircuitOpenError,
    CircuitState,
    DeadlineExceededError,
    RetryPolicy,
    ServiceClient,
    UpstreamError,
    UpstreamTimeoutError,
    deadline,
)
from corral.sdk.testing import capture_logs

from .conftest import Upstream

NO_RETRY = RetryPolicy(attempts=1)
GENEROUS_BUDGET = {"budget_ratio": 10.0, "budget_min_per_second": 100.0}

MakeClient = Callable[..., ServiceClient]


def metric(client: ServiceClient, name: str, **labels: str) -> float:
    value = client.telemetry.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def wait_half_open_ready(client: ServiceClient, timeout: float = 5.0) -> None:
    """Poll until the open breaker's wait has elapsed (a probe may go)."""
    assert client.breaker is not None
    async with asyncio.timeout(timeout):
        while client.breaker.snapshot()["retry_after"] > 0:
            await asyncio.sleep(0.01)


async def open_breaker(client: ServiceClient, upstream: Upstream, failures: int) -> None:
    await upstream.mode("fail", status=503)
    for _ in range(failures):
        with pytest.raises(UpstreamError):
            await client.get("/work")
    assert client.breaker is not None
    assert client.breaker.state is CircuitState.OPEN


# -- circuit breaker ----------------------------------------------------------------------
async def test_breaker_opens_after_threshold_and_fails_fast(
    make_client: MakeClient, upstream: Upstream
) -> None:
    """Three consecutive 503s open the circuit; while open, calls fail without sending."""
    client = make_client(
        retries=NO_RETRY, circuit_breaker=BreakerPolicy(consecutive_failures=3, wait=60)
    )
    await upstream.mode("fail", status=503)
    for _ in range(2):
        with pytest.raises(UpstreamError) as info:
            await client.get("/work")
        assert info.value.status == 503
    assert client.breaker is not None
    assert client.breaker.state is CircuitState.CLOSED
    with pytest.raises(UpstreamError):
        await client.get("/work")
    assert client.breaker.state is CircuitState.OPEN
    for _ in range(20):
        with pytest.raises(CircuitOpenError):
            await client.get("/work")
    assert await upstream.attempts() == 3
    assert metric(client, "corral_client_circuit_state", target="fault") == 2
    assert metric(client, "corral_client_calls_total", target="fault", outcome="circuit_open") == 20


async def test_failure_rate_opens_after_minimum_calls(
    make_client: MakeClient, upstream: Upstream
) -> None:
    """A 50% failure rate opens the circuit only once min_calls calls were seen."""
    client = make_client(
        retries=NO_RETRY,
        circuit_breaker=BreakerPolicy(
            consecutive_failures=None, failure_rate=0.5, min_calls=6, window=30, wait=60
        ),
    )
    assert client.breaker is not None
    for _ in range(2):  # ok, fail, ok, fail: 4 calls, below min_calls
        await upstream.mode("ok")
        await client.get("/work")
        await upstream.mode("fail", status=500)
        with pytest.raises(UpstreamError):
            await client.get("/work")
    assert client.breaker.state is CircuitState.CLOSED
    await upstream.mode("ok")
    await client.get("/work")
    await upstream.mode("fail", status=500)
    with pytest.raises(UpstreamError):
        await client.get("/work")  # 6 calls, 3 failures
    assert client.breaker.state is CircuitState.OPEN


async def test_half_open_lets_exactly_one_probe_among_50_callers_then_closes(
    make_client: MakeClient, upstream: Upstream
) -> None:
    """After the wait, 50 concurrent callers send exactly one probe; its success closes."""
    client = make_client(
        retries=NO_RETRY,
        timeout=5.0,
        circuit_breaker=BreakerPolicy(consecutive_failures=2, wait=0.2),
    )
    await open_breaker(client, upstream, 2)
    await upstream.mode("slow", delay=0.3)
    await wait_half_open_ready(client)
    results = await asyncio.gather(
        *(client.get("/work") for _ in range(50)), return_exceptions=True
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    rejected = [r for r in results if isinstance(r, CircuitOpenError)]
    assert len(ok) == 1, results
    assert len(rejected) == 49
    assert await upstream.attempts() == 3  # two failures + one probe
    assert client.breaker is not None
    assert client.breaker.state is CircuitState.CLOSED
    response = await client.get("/work")
    assert response.status_code == 200
    states = [
        metric(client, "corral_client_circuit_transitions_total", target="fault", state=s)
        for s in ("open", "half_open", "closed")
    ]
    assert states == [1, 1, 1]


async def test_hung_probe_is_bounded_and_the_breaker_recovers(
    make_client: MakeClient, upstream: Upstream
) -> None:
    """A probe that hangs times out and reopens the circuit; a later probe closes it."""
    client = make_client(
        retries=NO_RETRY,
        timeout=0.3,
        circuit_breaker=BreakerPolicy(consecutive_failures=1, wait=0.1),
    )
    await open_breaker(client, upstream, 1)
    await upstream.mode("hang")
    await wait_half_open_ready(client)
    with pytest.raises(UpstreamTimeoutError):
        await client.get("/work")
    assert client.breaker is not None
    assert client.breaker.state is CircuitState.OPEN
    await upstream.mode("ok")
    await wait_half_open_ready(client)
    assert (await client.get("/work")).status_code == 200
    assert client.breaker.state is CircuitState.CLOSED


async def test_attempt_timeout_bounds_a_slow_answer(
    make_client: MakeClient, upstream: Upstream
) -> None:
    """A per-call timeout ends an attempt the upstream answers too slowly, on time; a
    zero timeout fails at once instead of meaning "no timeout" to aiohttp."""
    client = make_client(retries=NO_RETRY, circuit_breaker=None)
    assert (await client.get("/work")).status_code == 200  # a pooled connection
    await upstream.mode("slow", delay=0.6)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        await client.get("/work", timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 0.55
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        await client.get("/work", timeout=0)
    assert time.monotonic() - started < 0.1
    async with asyncio.timeout(5):  # the abandoned slow answer ends before the next test
        while (await upstream.stats())["in_flight"]:
            await asyncio.sleep(0.02)


# -- retries --------------------------------------------------------------------------
async def test_retries_use_full_jitter(make_client: MakeClient, upstream: Upstream) -> None:
    """Retry delays are random within [0, min(max, initial * 2**n)]: they differ."""
    retry = RetryPolicy(attempts=4, initial=0.02, max=0.05, **GENEROUS_BUDGET)
    client = make_client(retries=retry, circuit_breaker=None)
    await upstream.mode("fail", status=503)
    with capture_logs() as logs:
        for _ in range(4):
            with pytest.raises(UpstreamError) as info:
                await client.get("/work")
            assert info.value.attempts == 4
    delays = [line["delay_ms"] for line in logs if line.get("event") == "client retry"]
    assert len(delays) == 12
    caps = [min(50.0, 20.0 * 2**n) for n in range(3)] * 4
    assert all(0 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert len(set(delays)) > 6, delays
    assert await upstream.attempts() == 16
    assert metric(client, "corral_client_retries_total", target="fault") == 12


async def test_retry_budget_caps_attempts_during_a_total_outage(
    make_client: MakeClient, upstream: Upstream
) -> None:
    """With a 10% budget and no reserve, 200 calls in an outage send at most ~220 attempts."""
    retry = RetryPolicy(
        attempts=3, initial=0.001, max=0.002, budget_ratio=0.1, budget_min_per_second=0
    )
    client = make_client(retries=retry, circuit_breaker=None)
    await upstream.mode("fail", status=503)
    calls = 200
    for _ in range(calls // 20):
        results = await asyncio.gather(
            *(client.get("/work") for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, UpstreamError) for r in results)
    attempts = await upstream.attempts()
    ratio = attempts / calls
    print(f"upstream attempts / client calls during the outage: {attempts}/{calls} = {ratio:.3f}")
    assert calls < attempts <= calls * 1.1 + 1
    assert metric(client, "corral_client_retry_budget_exhausted_total", target="fault") > 0


async def test_post_without_idempotency_key_is_never_retried(
    make_client: MakeClient, upstream: Upstream
) -> None:
    """A failing POST is sent once; with an Idempotency-Key it is retried."""
    retry = RetryPolicy(attempts=3, initial=0.001, max=0.002, **GENEROUS_BUDGET)
    client = make_client(retries=retry, circuit_breaker=None)
    await upstream.mode("fail", status=503)
    with pytest.raises(UpstreamError):
        await client.post("/charges", json={"ride": "r1"})
    assert (await upstream.stats())["by_method"] == {"POST": 1}
    with pytest.raises(UpstreamError):
        await client.post("/charges", json={"ride": "r1"}, headers={"Idempotency-Key": "r1"})
    assert (await upstream.stats())["by_method"] == {"POST": 4}


# -- bulkhead -------------------------------------------------------------------------
async def test_full_bulkhead_rejects_immediately(
    make_client: MakeClient, upstream: Upstream
) -> None:
    """With 2 in flight and 1 queued, the next call is rejected at once without sending."""
    client = make_client(
        retries=NO_RETRY,
        circuit_breaker=None,
        bulkhead=BulkheadPolicy(max_concurrent=2, max_queue=1),
    )
    await upstream.mode("hang")
    busy = [asyncio.create_task(client.get("/work")) for _ in range(3)]
    await upstream.wait_for("in_flight", 2)
    assert client.bulkhead is not None
    async with asyncio.timeout(5):
        while client.bulkhead.queued < 1:
            await asyncio.sleep(0.005)
    started = time.perf_counter()
    with pytest.raises(BulkheadFullError):
        await client.get("/work")
    took = time.perf_counter() - started
    print(f"bulkhead rejection took {took * 1000:.3f} ms")
    assert took < 0.05  # the bound is 5 ms; generous on a noisy 2-core machine
    assert await upstream.attempts() == 2
    assert metric(client, "corral_client_bulkhead_rejections_total", target="fault") == 1
    await upstream.mode("ok")
    results = await asyncio.gather(*busy)
    assert [r.status_code for r in results] == [200, 200, 200]
    assert client.bulkhead.active == 0


# -- fallback -------------------------------------------------------------------------
async def test_fallback_is_used_and_reported(make_client: MakeClient, upstream: Upstream) -> None:
    """A failing call returns the fallback's value, counted in a metric and logged."""
    client = make_client(retries=NO_RETRY, circuit_breaker=None)
    await upstream.mode("fail", status=503)
    seen: list[Exception] = []

    def degrade(exc: Exception) -> dict[str, None]:
        seen.append(exc)
        return {"eta": None}

    with capture_logs() as logs:
        result = await client.get("/estimate", fallback=degrade)
    assert result == {"eta": None}
    assert isinstance(seen[0], UpstreamError)
    assert seen[0].status == 503
    assert metric(client, "corral_client_fallbacks_total", target="fault", reason="status") == 1
    events = [line for line in logs if line.get("event") == "fallback used"]
    assert events
    assert events[0]["target"] == "fault"
    assert events[0]["reason"] == "status"

    async def async_degrade(exc: Exception) -> str:
        return "cached"

    assert await client.get("/estimate", fallback=async_degrade) == "cached"


# -- deadlines and headers ------------------------------------------------------------
async def test_deadline_and_context_headers_propagate(
    make_client: MakeClient, upstream: Upstream
) -> None:
    """The upstream gets a deadline below the caller's budget, traceparent and the caller."""
    client = make_client(timeout=10.0)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("handler") as span, deadline(2.0):
        await client.get("/work")
    trace_id = format(span.get_span_context().trace_id, "032x")
    last = (await upstream.stats())["last"]
    headers = {k.lower(): v for k, v in last["headers"].items()}
    left = float(headers[contract.DEADLINE_HEADER]) - last["received"]
    assert 0 < left < 2.0
    assert headers["traceparent"].startswith(f"00-{trace_id}-")
    assert headers[contract.CALLER_HEADER] == "caller"


async def test_expired_deadline_never_sends(make_client: MakeClient, upstream: Upstream) -> None:
    """A call whose deadline has passed raises DeadlineExceededError and sends nothing."""
    client = make_client()
    with deadline(0.0), pytest.raises(DeadlineExceededError):
        await client.get("/work")
    assert await upstream.attempts() == 0


async def test_deadline_cuts_an_attempt_short(make_client: MakeClient, upstream: Upstream) -> None:
    """A slow upstream and a short deadline end in DeadlineExceededError, not a retry."""
    client = make_client(timeout=5.0)
    await upstream.mode("hang")
    with deadline(0.2), pytest.raises(DeadlineExceededError):
        await client.get("/work")
    assert await upstream.attempts() == 1


# -- recovery -----------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [10, 3], ids=["breaker-stays-closed", "breaker-opens"])
async def test_calls_succeed_again_once_the_upstream_recovers(
    make_client: MakeClient, upstream: Upstream, threshold: int
) -> None:
    """An upstream failing its next 6 calls, then recovering: keyed POSTs (ridehail's
    payments -> fakepay policy) succeed again within the breaker's wait."""
    wait = 0.3
    client = make_client(
        timeout=2.0,
        retries=RetryPolicy(attempts=3, initial=0.01, max=0.05, on_status=frozenset({503})),
        circuit_breaker=BreakerPolicy(consecutive_failures=threshold, wait=wait),
    )
    await upstream.mode("fail", status=503, count=6)
    key = {"Idempotency-Key": "ride-charge-0123456789"}
    body = {"amount": "12.30", "currency": "EUR", "reference": "r1"}
    outcomes: list[str] = []
    recovered_at: float | None = None
    started = time.monotonic()
    while time.monotonic() - started < 5.0:
        try:
            response = await client.post("/charges", json=body, headers=key)
        except (UpstreamError, CircuitOpenError) as exc:
            outcomes.append(exc.reason)
            await asyncio.sleep(0.05)
            continue
        outcomes.append(str(response.status_code))
        recovered_at = time.monotonic()
        break
    assert recovered_at is not None, outcomes
    assert (await upstream.stats())["by_method"]["POST"] >= 6
    assert client.breaker is not None
    assert client.breaker.state is CircuitState.CLOSED
    # once recovered, every further call succeeds
    for _ in range(5):
        assert (await client.post("/charges", json=body, headers=key)).status_code == 200
