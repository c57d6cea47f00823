"""HTTP client for service calls: aiohttp vs httpx, httpx2, pyreqwest and aiosonic.

Every candidate calls the same upstream (a tiny raw-ASGI JSON endpoint on uvicorn with
uvloop and httptools, in its own process, 127.0.0.1 only) from a client process running
on uvloop, as a Corral service would. For each concurrency (in-flight requests) every
client runs for the same duration; rounds alternate the order so drift hits all alike.
Each client's CPU time per call is recorded too (its process, all threads: pyreqwest
does its I/O on Rust threads). Speed is not the only test: a resilience client cancels
calls (deadlines, a caller that went away), so each candidate is also cancelled while
waiting on a server that never answers, and the bench records whether the server sees
the connection close (the request really stopped) within a second.
Results: bench/results/http_clients.json.

    uv run python bench/http_clients.py [--duration 3] [--rounds 2] [--concurrency 1 16 64]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from _common import free_port, write_result

HERE = Path(__file__).resolve().parent
BODY = json.dumps({"id": "r-1", "eta_seconds": 240, "price": 12.5}).encode()


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def serve_upstream(port: int) -> None:
    import uvicorn

    uvicorn.run(
        upstream_app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"upstream did not listen on {port}")


Call = Callable[[], Awaitable[None]]


async def make_client(
    kind: str, url: str, limit: int
) -> tuple[Call, Callable[[], Awaitable[None]]]:
    """A pooled client (pool size = the concurrency) and its close function."""
    if kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit),
            timeout=aiohttp.ClientTimeout(total=10),
        )

        async def call_aiohttp() -> None:
            async with session.get(url) as response:
                await response.read()
                assert response.status == 200

        return call_aiohttp, session.close
    if kind in ("httpx", "httpx2"):
        module: Any = __import__(kind)
        client = module.AsyncClient(
            limits=module.Limits(max_connections=limit, max_keepalive_connections=limit),
            timeout=10.0,
        )

        async def call_httpx() -> None:
            response = await client.get(url)
            assert response.status_code == 200

        return call_httpx, client.aclose
    if kind == "pyreqwest":
        from pyreqwest.client import ClientBuilder

        rclient = ClientBuilder().max_connections(limit).timeout(timedelta(seconds=10)).build()

        async def call_pyreqwest() -> None:
            response = await rclient.get(url).build().send()
            await response.bytes()
            assert response.status == 200

        return call_pyreqwest, rclient.close
    if kind == "aiosonic":
        import aiosonic
        from aiosonic.pools import PoolConfig

        sonic = aiosonic.HTTPClient(
            aiosonic.TCPConnector(pool_configs={":default": PoolConfig(size=limit)})
        )

        async def call_aiosonic() -> None:
            response = await sonic.get(url)
            await response.content()
            assert response.status_code == 200

        return call_aiosonic, sonic.aclose
    raise ValueError(kind)


async def cancel_closes_connection(kind: str) -> float | None:
    """Cancel a call that is waiting on a server that never answers: seconds until the
    server saw its connection close, None if it stayed open for a second (the request
    kept running after the caller gave up)."""
    accepted: asyncio.Queue[asyncio.Event] = asyncio.Queue()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        closed = asyncio.Event()
        await accepted.put(closed)
        await reader.read()  # returns when the client closes the connection
        closed.set()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    call, close = await make_client(kind, f"http://127.0.0.1:{port}/hang", 4)
    task = asyncio.ensure_future(call())
    try:
        closed = await asyncio.wait_for(accepted.get(), 5)
        await asyncio.sleep(0.05)  # the request is sent and waiting
        task.cancel()
        cancelled_at = time.perf_counter()
        try:
            await asyncio.wait_for(closed.wait(), 1.0)
        except TimeoutError:
            return None
        return round(time.perf_counter() - cancelled_at, 4)
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await close()
        server.close()


async def run_one(kind: str, url: str, concurrency: int, duration: float) -> dict[str, Any]:
    call, close = await make_client(kind, url, concurrency)
    for _ in range(50):  # warm the pool
        await call()
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        while True:
            start = time.perf_counter()
            if start >= stop_at:
                return
            await call()
            latencies.append(time.perf_counter() - start)

    began, usage_began = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, usage = time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime - usage_began.ru_utime + usage.ru_stime - usage_began.ru_stime
    await close()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return {
        "client": kind,
        "concurrency": concurrency,
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 3),
        "p99_ms": round(q[98] * 1000, 3),
        # the client process's CPU (all its threads) per call
        "cpu_us_per_call": round(cpu / len(latencies) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--clients",
        nargs="+",
        default=["aiohttp", "httpx", "httpx2", "pyreqwest", "aiosonic"],
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
    try:
        wait_for_port(port)
        import uvloop

        url = f"http://127.0.0.1:{port}/estimate"
        runs: list[dict[str, Any]] = []
        for round_no in range(args.rounds):
            order = args.clients if round_no % 2 == 0 else list(reversed(args.clients))
            for concurrency in args.concurrency:
                for kind in order:
                    result = uvloop.run(run_one(kind, url, concurrency, args.duration))
                    result["round"] = round_no
                    runs.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        server.terminate()
        server.wait(10)

    summary: dict[str, dict[str, Any]] = {}
    for kind in args.clients:
        for concurrency in args.concurrency:
            mine = [r for r in runs if r["client"] == kind and r["concurrency"] == concurrency]
            summary.setdefault(kind, {})[str(concurrency)] = {
                "rps": round(statistics.median(r["rps"] for r in mine), 1),
                "p50_ms": round(statistics.median(r["p50_ms"] for r in mine), 3),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in mine), 3),
                "cpu_us_per_call": round(statistics.median(r["cpu_us_per_call"] for r in mine), 1),
            }
    best = {
        str(c): max(args.clients, key=lambda k, c=c: summary[k][str(c)]["rps"])
        for c in args.concurrency
    }
    cancel = {
        kind: {"closed_after_s": uvloop.run(cancel_closes_connection(kind))}
        for kind in args.clients
    }
    for result in cancel.values():
        result["stops_on_cancel"] = result["closed_after_s"] is not None
    print(json.dumps({"cancel": cancel}), flush=True)
    versions = {kind: importlib.metadata.version(kind) for kind in args.clients}
    out = {
        "benchmark": "http_clients",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "upstream": "raw ASGI JSON on uvicorn (uvloop, httptools), separate process",
        "client_loop": "uvloop",
        "duration_s": args.duration,
        "rounds": args.rounds,
        "versions": versions,
        "summary_median_of_rounds": summary,
        "fastest_by_concurrency": best,
        "cancellation": cancel,
        "runs": runs,
    }
    write_result("http_clients.json", out)
    print(json.dumps({"summary": summary, "fastest": best, "cancel": cancel}, indent=2))


if __name__ == "__main__":
    main()
