"""Overhead of the policy-wrapped ServiceClient against a bare pooled aiohttp session.

Both call the same upstream (raw ASGI JSON on uvicorn with uvloop/httptools, its own
process, 127.0.0.1) from one uvloop process, side by side, rounds alternating the order.
The wrapped client runs the default policy (timeout, retries + budget, circuit breaker)
plus a bulkhead and metrics, inside a current span and request id as in a handler, so
it sends traceparent, request id, caller and deadline headers on every call.
Goals (issue 6): added p50 latency <= 10% at 1 in flight; throughput >= 0.9x at 16,
judged against the bare session. A third side, the bare session sending the same four
context headers (fixed values, built once), splits the overhead into what carrying the
context costs aiohttp and what the policy's own code costs.
Results: bench/results/client_overhead.json.

    uv run python bench/client_overhead.py [--duration 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from http_clients import free_port, wait_for_port  # noqa: E402

# What the wrapped client sends inside a handler (its values in the wrapped run below).
CONTEXT_HEADERS = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "x-request-id": "0f9c2b7e4d1a4c3e8b5a6d7c8e9f0a1b",
    "x-corral-caller": "bench",
    "x-corral-deadline": "1764126000.123",
}


async def measure(
    call: Callable[[], Awaitable[None]], concurrency: int, duration: float
) -> dict[str, Any]:
    for _ in range(200):
        await call()
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        while (start := time.perf_counter()) < stop_at:
            await call()
            latencies.append(time.perf_counter() - start)

    began, usage_began = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, usage = time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF)
    user = usage.ru_utime - usage_began.ru_utime
    system = usage.ru_stime - usage_began.ru_stime
    calls = len(latencies)
    q = statistics.quantiles(latencies, n=100)
    return {
        "rps": round(calls / elapsed, 1),
        # client-process CPU per call: unlike latency, not inflated by being descheduled;
        # user (Python, the libraries) and system (the socket calls, waking the upstream)
        "cpu_us_per_call": round((user + system) / calls * 1e6, 2),
        "user_us_per_call": round(user / calls * 1e6, 2),
        "sys_us_per_call": round(system / calls * 1e6, 2),
        "p50_ms": round(q[49] * 1000, 4),
        "p99_ms": round(q[98] * 1000, 4),
    }


async def run(
    kind: str, url: str, concurrency: int, duration: float, context: bool = True
) -> dict[str, Any]:
    import aiohttp
    from opentelemetry.trace import (
        INVALID_SPAN,
        NonRecordingSpan,
        SpanContext,
        TraceFlags,
        use_span,
    )

    from corral.sdk._context import request_id_var
    from corral.sdk.client import (
        BulkheadPolicy,
        ClientTelemetry,
        Policy,
        ServiceClient,
        StaticResolver,
    )

    if kind in ("bare", "bare_context"):
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100), timeout=aiohttp.ClientTimeout(total=10)
        )
        headers = CONTEXT_HEADERS if kind == "bare_context" else None

        async def bare() -> None:
            async with session.get(url + "/estimate", headers=headers) as response:
                await response.read()
                assert response.status == 200

        try:
            return await measure(bare, concurrency, duration)
        finally:
            await session.close()
    client = ServiceClient(
        "pricing",
        resolver=StaticResolver({"pricing": url}),
        policy=Policy(bulkhead=BulkheadPolicy(max_concurrent=256, max_queue=0)),
        telemetry=ClientTelemetry(),
        caller="bench",
    )

    async def wrapped() -> None:
        response = await client.get("/estimate")
        assert response.status_code == 200

    # As inside a service's handler: a current span (its context is what traceparent
    # carries; not recording, as with export off) and a request id, so all four context
    # headers go out on every call.
    span = NonRecordingSpan(
        SpanContext(
            trace_id=0x0AF7651916CD43DD8448EB211C80319C,
            span_id=0xB7AD6B7169203331,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    )
    token = request_id_var.set("0f9c2b7e4d1a4c3e8b5a6d7c8e9f0a1b" if context else None)
    try:
        with use_span(span if context else INVALID_SPAN):
            return await measure(wrapped, concurrency, duration)
    finally:
        request_id_var.reset(token)
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--no-context",
        dest="context",
        action="store_false",
        help="no current span or request id: only the caller and deadline headers go out "
        "(how this bench measured before the context was added)",
    )
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(HERE)!r}); "
            f"import http_clients; http_clients.serve_upstream({port})",
        ]
    )
    import uvloop

    runs: list[dict[str, Any]] = []
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        for round_no in range(args.rounds):
            order = ["bare", "bare_context", "wrapped"]
            if round_no % 2:
                order.reverse()
            for concurrency in args.concurrency:
                for kind in order:
                    result = uvloop.run(run(kind, url, concurrency, args.duration, args.context))
                    result.update(kind=kind, concurrency=concurrency, round=round_no)
                    runs.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        server.terminate()
        server.wait(10)

    summary: dict[str, dict[str, Any]] = {}
    for concurrency in args.concurrency:
        row: dict[str, Any] = {}
        for kind in ("bare", "bare_context", "wrapped"):
            mine = [r for r in runs if r["kind"] == kind and r["concurrency"] == concurrency]
            row[kind] = {
                key: round(statistics.median(r[key] for r in mine), 4)
                for key in (
                    "rps",
                    "p50_ms",
                    "p99_ms",
                    "cpu_us_per_call",
                    "user_us_per_call",
                    "sys_us_per_call",
                )
            }

        # Ratios of runs of the same round (side by side on a shared machine), then the
        # median over rounds: load that comes and goes hits both sides alike.
        def cell(kind: str, n: int, concurrency: int = concurrency) -> dict[str, Any]:
            return next(
                r
                for r in runs
                if r["kind"] == kind and r["round"] == n and r["concurrency"] == concurrency
            )

        for label, base_kind, kind in (
            ("", "bare", "wrapped"),
            ("context_", "bare", "bare_context"),
            ("policy_", "bare_context", "wrapped"),
        ):
            pairs = [(cell(base_kind, n), cell(kind, n)) for n in range(args.rounds)]
            row[f"{label}throughput_ratio"] = round(
                statistics.median(w["rps"] / b["rps"] for b, w in pairs), 3
            )
            row[f"{label}p50_added_pct"] = round(
                statistics.median((w["p50_ms"] / b["p50_ms"] - 1) * 100 for b, w in pairs), 1
            )
            for key in ("cpu", "user", "sys") if not label else ("cpu",):
                row[f"{label}{key}_added_us_per_call"] = round(
                    statistics.median(
                        w[f"{key}_us_per_call"] - b[f"{key}_us_per_call"] for b, w in pairs
                    ),
                    2,
                )
        row["per_round"] = [
            {
                "throughput_ratio": round(cell("wrapped", n)["rps"] / cell("bare", n)["rps"], 3),
                "p50_added_pct": round(
                    (cell("wrapped", n)["p50_ms"] / cell("bare", n)["p50_ms"] - 1) * 100, 1
                ),
            }
            for n in range(args.rounds)
        ]
        summary[str(concurrency)] = row
    goals = {
        "p50_added_pct_at_1_max": 10.0,
        "throughput_ratio_at_16_min": 0.9,
        "p50_met": summary.get("1", {}).get("p50_added_pct", 1e9) <= 10.0,
        "throughput_met": summary.get("16", {}).get("throughput_ratio", 0) >= 0.9,
    }
    out = {
        "benchmark": "client_overhead",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "upstream": "raw ASGI JSON on uvicorn (uvloop, httptools), separate process",
        "wrapped_policy": "timeout 10s, retries 3 + budget, breaker (5 consecutive), bulkhead 256",
        "wrapped_context": "current span + request id: traceparent, x-request-id, "
        "x-corral-caller, x-corral-deadline on every call"
        if args.context
        else "none: x-corral-caller and x-corral-deadline only",
        "duration_s": args.duration,
        "rounds": args.rounds,
        "summary_median_of_rounds": summary,
        "ratios": "median over rounds of the ratio within each round; unprefixed: wrapped "
        "vs bare (the goals); context_: bare with the four context headers vs bare; "
        "policy_: wrapped vs bare with the same headers (the policy's own cost)",
        "goals": goals,
        "runs": runs,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "client_overhead.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"summary": summary, "goals": goals}, indent=2))


if __name__ == "__main__":
    main()
