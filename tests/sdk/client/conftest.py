"""Fixtures: fault-injecting upstreams as real processes on free ports."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.sdk._logging import configure_logging
from corral.sdk.client import ClientTelemetry, Policy, ServiceClient, StaticResolver
from testkit import free_port

HERE = Path(__file__).resolve().parent


class Upstream:
    """A running fault_service.py process and its admin API."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "fault_service.py"), str(self.port), name]
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(self.url + "/admin/stats", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"fault service {name} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    async def admin(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            if body is None and path == "/admin/stats":
                response = await client.get(path)
            else:
                response = await client.post(path, json=body or {})
            response.raise_for_status()
            result: dict[str, Any] = response.json()
            return result

    async def mode(self, mode: str, **options: Any) -> None:
        await self.admin("/admin/mode", {"mode": mode, **options})

    async def stats(self) -> dict[str, Any]:
        return await self.admin("/admin/stats")

    async def attempts(self) -> int:
        return int((await self.stats())["attempts"])

    async def wait_for(self, key: str, value: int, timeout: float = 5.0) -> None:
        """Poll the stats until ``stats[key] >= value``."""
        async with asyncio.timeout(timeout):
            while (await self.stats())[key] < value:
                await asyncio.sleep(0.01)


@pytest.fixture(scope="session")
def upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    """Two fault services, started once for the whole client suite."""
    configure_logging(service="caller", instance="caller-1")
    a, b = Upstream("fault-a"), Upstream("fault-b")
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
async def upstream(upstreams: tuple[Upstream, Upstream]) -> AsyncIterator[Upstream]:
    """The first fault service, reset before and after the test."""
    for u in upstreams:
        await u.admin("/admin/reset")
    yield upstreams[0]
    for u in upstreams:
        await u.admin("/admin/reset")


MakeClient = Callable[..., ServiceClient]


@pytest.fixture
async def make_client(upstream: Upstream) -> AsyncIterator[MakeClient]:
    """A client of the fault service with the given policy; closed after the test."""
    clients: list[ServiceClient] = []

    def make(**policy: Any) -> ServiceClient:
        client = ServiceClient(
            "fault",
            resolver=StaticResolver({"fault": upstream.url}),
            policy=Policy(**policy),
            telemetry=ClientTelemetry(),
            caller="caller",
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
