"""Live configuration: how long a change takes to reach every instance of a running
service, in place (a reloadable field) against by a rolling restart (a field read once at
start), in the same run on the same system. Not a test: timing lives here.

The system: one SDK service, 2 replicas, behind Envoy. Each change is a ``POST
/v1/config/services/tunable/set``, which answers once every instance has the new
version (reported applied, or replaced by the rolling restart); the bench then checks
that every answer through the gateway carries it.

Run: ``uv run python bench/config_push.py [--live N] [--rolled N]``; writes
bench/results/config.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import percentile, write_result

from corral.control import SystemSession, addons_for
from corral.manifest import load
from corral.plan import resolve

APP = """
from pydantic import Field
from corral.sdk import Service, ServiceSettings

class Settings(ServiceSettings):
    greeting: str = Field(default="hello", json_schema_extra={"reloadable": True})
    workers: int = 1

svc = Service("tunable", settings=Settings)

@svc.get("/")
async def root() -> dict[str, object]:
    return {"greeting": svc.settings.greeting, "workers": svc.settings.workers}
"""

MANIFEST = """name: bench-config
services:
  tunable:
    app: tunable:svc
    replicas: 2
    database: none
    stop_grace_period: 3s
    env: {GREETING: hello, WORKERS: "1"}  # settings `config set` may change
gateway:
  routes:
    - {match: {prefix: /}, service: tunable}
"""


async def change(api: httpx.AsyncClient, gateway: httpx.AsyncClient, **values: str) -> float:
    """Seconds from the request to its answer; asserts the gateway serves the change."""
    began = time.perf_counter()
    response = await api.post(
        "/v1/config/services/tunable/set", json={"values": values, "author": "bench"}
    )
    took = time.perf_counter() - began
    response.raise_for_status()
    answers = [(await gateway.get("/")).json() for _ in range(6)]
    key, value = next(iter(values.items()))
    assert {str(a[key.lower()]) for a in answers} == {value}, answers
    return took


async def main(live_rounds: int, rolled_rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "tunable.py").write_text(APP)
        (root / "corral.yaml").write_text(MANIFEST)
        manifest = load(root)
        plan = resolve(manifest, python=sys.executable)
        session = SystemSession(manifest, plan, addons=addons_for(plan))
        run = asyncio.create_task(session.run())
        await asyncio.wait_for(session.ready.wait(), 120)
        headers = {"authorization": f"Bearer {session.admin_token}"}
        try:
            async with (
                httpx.AsyncClient(base_url=session.api_url, headers=headers, timeout=120) as api,
                httpx.AsyncClient(base_url=str(session.status().gateway_url), timeout=5) as gw,
            ):
                live = [await change(api, gw, GREETING=f"hello-{i}") for i in range(live_rounds)]
                rolled = [await change(api, gw, WORKERS=str(2 + i)) for i in range(rolled_rounds)]
        finally:
            await session.request_shutdown()
            await asyncio.wait_for(run, 60)
    live_ms = [t * 1000 for t in live]
    rolled_ms = [t * 1000 for t in rolled]
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "replicas": 2,
        "live": {
            "rounds": live_rounds,
            "p50_ms": round(percentile(live_ms, 0.5), 1),
            "p99_ms": round(percentile(live_ms, 0.99), 1),
        },
        "rolling_restart": {
            "rounds": rolled_rounds,
            "median_ms": round(statistics.median(rolled_ms), 1),
            "max_ms": round(max(rolled_ms), 1),
        },
        "rolling_over_live": round(statistics.median(rolled_ms) / statistics.median(live_ms), 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", type=int, default=20)
    parser.add_argument("--rolled", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(main(args.live, args.rolled))
    print(result)
    print(write_result("config.json", result))
