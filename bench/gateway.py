"""Gateway benchmark: the same upstream direct, through Corral's Envoy gateway (JWT and a
rate limit on the route) and through a minimal aiohttp reverse proxy, side by side in one
run; plus the time from a registry change to Envoy applying it.

    uv run python bench/gateway.py [--duration 5] [--connections 32] [--swaps 200]

Load goes to 127.0.0.1 only, with wrk (apt-get install -y wrk). Writes
bench/results/gateway.json. Goals: gateway >= 0.7x direct and >= 2.5x the Python proxy;
registry change -> Envoy applied p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "gateway"))
from gateway_harness import KeyPair, free_port, start_gateway, wait_until, write_jwks

from corral.runtime.registry import InstanceRecord, InstanceState, Registry

UPSTREAM = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true,"service":"bench"}'})
"""

PROXY = """
import sys
from aiohttp import ClientSession, web

TARGET = sys.argv[2]

async def on_startup(app):
    app["session"] = ClientSession()

async def handle(request):
    async with request.app["session"].request(
        request.method, TARGET + request.path_qs, headers=request.headers,
        data=await request.read()) as upstream:
        body = await upstream.read()
        return web.Response(body=body, status=upstream.status,
                            content_type=upstream.content_type)

app = web.Application()
app.on_startup.append(on_startup)
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

MANIFEST = """
name: bench
services:
  api: {{command: "true"}}
gateway:
  jwt:
    main:
      issuer: https://bench.test
      audiences: [bench]
      jwks: {{file: {jwks}}}
  routes:
    - match: {{prefix: /}}
      service: api
      rate_limit: {{requests: 10000000, per: 1s, key: subject}}
"""


def wrk(url: str, *, duration: int, connections: int, token: str) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "requests_per_s": rps,
        "p99_ms": round(float(p99.group(1)) * scale, 3),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def swaps(gw, upstream_ports: list[int], count: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Registry change -> Envoy's /clusters shows it, over many endpoint swaps."""
    registry = Registry()
    registry.put(_record("api-1", upstream_ports[0]))
    gw.addon.follow(registry)
    await gw.addon.wait_applied(registry.snapshot())
    timings: list[float] = []
    render: list[float] = []
    for i in range(count):
        port = upstream_ports[(i + 1) % 2]
        started = time.perf_counter()
        registry.put(_record("api-1", port))
        await asyncio.sleep(0)  # let the watcher run, as in the runtime
        await gw.addon.wait_applied(registry.snapshot(), timeout=5)
        timings.append((time.perf_counter() - started) * 1000)
    render = [s * 1000 for s in list(gw.addon.apply_seconds)[-count:]]
    await gw.addon.stop()
    return {
        "swaps": count,
        "p50_ms": round(statistics.median(timings), 3),
        "p99_ms": round(pct(timings, 0.99), 3),
        "max_ms": round(max(timings), 3),
        "render_and_write_p50_ms": round(statistics.median(render), 3),
    }


def _record(instance: str, port: int) -> InstanceRecord:
    return InstanceRecord("api", instance, "127.0.0.1", port, InstanceState.RUNNING, ready=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--swaps", type=int, default=200)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="corral-bench-gw-"))
    (work / "upstream_app.py").write_text(UPSTREAM)
    (work / "proxy.py").write_text(PROXY)
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(argv: list[str]) -> None:
        processes.append(
            subprocess.Popen(argv, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )

    upstream_ports = [free_port(), free_port()]
    for port in upstream_ports:
        spawn(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "upstream_app:app",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ]
        )
    proxy_port = free_port()
    spawn([sys.executable, "proxy.py", str(proxy_port), f"http://127.0.0.1:{upstream_ports[0]}"])
    for port in [*upstream_ports, proxy_port]:
        wait_until(lambda p=port: answers(f"http://127.0.0.1:{p}/"), what=f"port {port}")

    key = KeyPair.generate("bench")
    jwks = write_jwks(work / "jwks.json", [key])
    now = int(time.time())
    token = key.token(
        {
            "iss": "https://bench.test",
            "aud": "bench",
            "sub": "bench-user",
            "iat": now,
            "exp": now + 3600,
        }
    )
    gw = start_gateway(
        MANIFEST.format(jwks=jwks), work / "gw", [_record("api-1", upstream_ports[0])]
    )
    try:
        assert (
            httpx.get(gw.url + "/", headers={"authorization": f"Bearer {token}"}).status_code == 200
        )
        assert httpx.get(gw.url + "/").status_code == 401
        targets = {
            "direct": f"http://127.0.0.1:{upstream_ports[0]}/",
            "gateway": gw.url + "/",
            "aiohttp_proxy": f"http://127.0.0.1:{proxy_port}/",
        }
        for url in targets.values():  # warm up
            wrk(url, duration=1, connections=args.connections, token=token)
        results = {
            name: wrk(url, duration=args.duration, connections=args.connections, token=token)
            for name, url in targets.items()
        }
        change = asyncio.run(swaps(gw, upstream_ports, args.swaps))
    finally:
        gw.stop()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)

    direct = results["direct"]["requests_per_s"]
    proxy = results["aiohttp_proxy"]["requests_per_s"]
    gateway = results["gateway"]["requests_per_s"]
    report = {
        "benchmark": "gateway",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load": {
            "tool": "wrk",
            "threads": 1,
            "connections": args.connections,
            "duration_s": args.duration,
            "upstream": "uvicorn, tiny JSON",
        },
        "gateway_route": "JWT (RS256, local JWKS) + local rate limit keyed by subject "
        "(high enough not to trigger); Envoy 1 worker; JSON access log",
        "results": results,
        "ratios": {
            "gateway_vs_direct": round(gateway / direct, 3),
            "gateway_vs_aiohttp_proxy": round(gateway / proxy, 3),
        },
        "goals": {
            "gateway_vs_direct": ">= 0.7",
            "gateway_vs_aiohttp_proxy": ">= 2.5",
            "registry_change_p99_ms": "< 50",
        },
        "registry_change_to_envoy_applied": change,
    }
    out = Path(__file__).parent / "results" / "gateway.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
