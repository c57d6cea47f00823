"""Autoscaling with real processes: load through Envoy raises the replica count of an
SDK service, and it falls back to its minimum once the load is gone and the cooldown
has passed. Decisions show in the status with their reasons."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import httpx
import pytest

from corral.control import SystemSession, addons_for
from corral.manifest import load
from corral.plan import resolve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

APPS = Path(__file__).parent / "apps"


async def until(check, timeout: float) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.1)


async def test_load_scales_out_and_the_quiet_scales_back_in(tmp_path: Path) -> None:
    """16 concurrent slow requests against target 2 in flight: out to max 3; no load:
    back to min 1 after the down window and cooldown."""
    (tmp_path / "corral.yaml").write_text(
        f"""name: scaling
services:
  slow:
    app: slow:svc
    workdir: {APPS}
    database: none
    stop_grace_period: 2s
    autoscale:
      min: 1
      max: 3
      target: {{in_flight: 2}}
      stabilization: {{up: 0s, down: 2s}}
      cooldown: {{up: 1s, down: 3s}}
gateway:
  routes:
    - {{match: {{prefix: /}}, service: slow}}
"""
    )
    manifest = load(tmp_path)
    plan = resolve(manifest, python=sys.executable)
    addons = addons_for(plan)
    session = SystemSession(manifest, plan, addons=addons)
    session.autoscaler.period, session.autoscaler.window = 0.5, 4.0
    if session.telemetry is not None:
        session.telemetry.interval = 0.5
    run = asyncio.create_task(session.run())
    load_tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.wait_for(session.ready.wait(), 90)

        def replicas() -> int:
            return session.status().services["slow"].replicas

        assert replicas() == 1
        async with httpx.AsyncClient(
            base_url=str(session.status().gateway_url), timeout=30
        ) as gateway:

            async def client() -> None:
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        await gateway.get("/work")

            load_tasks = [asyncio.create_task(client()) for _ in range(16)]
            await until(lambda: replicas() == 3, 90)
            for task in load_tasks:
                task.cancel()
            await asyncio.gather(*load_tasks, return_exceptions=True)
        scaled = session.status().model_dump()["autoscale"]["slow"]
        assert scaled["changes"][0]["to"] > 1
        assert "in-flight requests per instance" in scaled["changes"][0]["reason"]
        assert "scale out" in scaled["changes"][0]["reason"]
        await until(lambda: replicas() == 1, 90)
        last = session.status().model_dump()["autoscale"]["slow"]["changes"][-1]
        assert "scale in" in last["reason"]
        assert last["to"] == 1
    finally:
        for task in load_tasks:
            task.cancel()
        await session.request_shutdown()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, 60)
