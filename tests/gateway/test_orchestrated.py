"""Through the orchestrator: Envoy supervised as a component, traffic kept across failures."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from gateway_harness import HERE, manifest_from

from corral.gateway import GatewayAddon
from corral.runtime.orchestrator import Orchestrator

pytestmark = pytest.mark.integration


def manifest(replicas: int) -> str:
    return f"""
name: orchestrated
services:
  web:
    command: ["{sys.executable}", "{HERE / "upstream.py"}", env]
    replicas: {replicas}
    readiness: {{http: /__ready, period: 50ms}}
    stop_grace_period: 2s
    database: none
gateway:
  routes:
    - match: {{prefix: /}}
      service: web
"""


async def _up(tmp_path: Path, replicas: int) -> tuple[Orchestrator, GatewayAddon]:
    manifest_obj, plan = manifest_from(manifest(replicas), tmp_path)
    addon = GatewayAddon()
    orchestrator = Orchestrator(
        plan, manifest_path=manifest_obj.path, addons=[addon], start_timeout=30
    )
    await orchestrator.up()
    return orchestrator, addon


class Steady:
    """A client sending GETs back to back; counts failures."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failed: list[str] = []
        self.seen: dict[str, float] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            while not self._stop.is_set():
                try:
                    response = await client.get("/")
                except httpx.HTTPError as exc:
                    self.failed.append(repr(exc))
                    continue
                if response.status_code == 200:
                    self.ok += 1
                    self.seen.setdefault(response.json()["name"], time.monotonic())
                else:
                    self.failed.append(f"{response.status_code} {response.text[:200]}")

    async def __aenter__(self) -> Steady:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


@pytest.fixture
async def three(tmp_path: Path) -> AsyncIterator[tuple[Orchestrator, GatewayAddon]]:
    orchestrator, addon = await _up(tmp_path, 3)
    yield orchestrator, addon
    await orchestrator.down()


async def test_kill_9_of_one_replica_fails_no_request(
    three: tuple[Orchestrator, GatewayAddon],
) -> None:
    """kill -9 of one of three replicas under a steady client: 0 failed GETs, while the
    supervisor replaces it and traffic goes on."""
    orchestrator, addon = three
    url = addon.status()["gateway_url"]
    victim = orchestrator.registry.snapshot().serving("web")[0]
    assert victim.pid is not None

    async def until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    def replaced() -> bool:
        serving = orchestrator.registry.snapshot().serving("web")
        return len(serving) == 3 and all(r.pid != victim.pid for r in serving)

    async with Steady(url) as client:
        await until(lambda: client.ok >= 20, "traffic flowing before the kill")
        os.kill(victim.pid, signal.SIGKILL)
        await until(replaced, "the killed replica replaced")
        after = client.ok
        await until(lambda: client.ok >= after + 20, "traffic after the replacement")
    assert client.failed == []


async def test_rolling_restart_fails_no_request(three: tuple[Orchestrator, GatewayAddon]) -> None:
    """A rolling restart of a 3-replica service under a steady client: 0 failed requests."""
    orchestrator, addon = three
    before = {r.instance for r in orchestrator.registry.snapshot().serving("web")}
    async with Steady(addon.status()["gateway_url"]) as client:
        await orchestrator.restart("web", rolling=True)
    after = {r.instance for r in orchestrator.registry.snapshot().serving("web")}
    assert before.isdisjoint(after)
    assert client.failed == []


async def test_scale_up_gives_every_new_replica_traffic(tmp_path: Path) -> None:
    """Scale 1 -> 3: every new replica gets traffic once ready, with no failed request
    (how fast is bench/'s to measure: the endpoint swap is about 2 ms)."""
    orchestrator, addon = await _up(tmp_path, 1)
    try:
        async with Steady(addon.status()["gateway_url"]) as client:
            await orchestrator.scale("web", 3)
            deadline = time.monotonic() + 30
            while len(client.seen) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        assert len(client.seen) == 3, client.seen
        assert client.failed == []
    finally:
        await orchestrator.down()


async def test_a_gateway_fault_survives_an_envoy_restart(tmp_path: Path) -> None:
    """A chaos fault set on Envoy's runtime is set again when the supervisor restarts a
    killed Envoy, so an experiment listed as active still injects; clearing it after
    the restart works."""
    from corral.gateway import COMPONENT_NAME, Fault

    orchestrator, addon = await _up(tmp_path, 1)
    try:
        url = addon.status()["gateway_url"]
        fault = Fault("web", 100, abort_status=418)
        await addon.inject(fault)
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            assert (await client.get("/")).status_code == 418

            def envoy_pid() -> int | None:
                found = [
                    r
                    for r in orchestrator.registry.snapshot().instances
                    if r.service == COMPONENT_NAME and r.serving
                ]
                return found[0].pid if found else None

            killed = envoy_pid()
            assert killed is not None
            os.kill(killed, signal.SIGKILL)

            async def status_after_restart() -> int | None:
                pid = envoy_pid()
                if pid is None or pid == killed:
                    return None
                try:
                    return (await client.get("/")).status_code
                except httpx.HTTPError:
                    return None

            deadline = time.monotonic() + 20
            status = None
            while time.monotonic() < deadline and status != 418:
                status = await status_after_restart()
                await asyncio.sleep(0.05)
            assert status == 418, "the restarted Envoy forgot the fault"
            await addon.clear(fault)
            assert (await client.get("/")).status_code == 200
    finally:
        await orchestrator.down()
