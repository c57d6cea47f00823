"""Shared by the broker tests: a manifest with topics, and a minimal RuntimeContext that
runs the embedded nats-server as a plain process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from events.helpers import free_port

from corral.broker import BrokerAddon
from corral.manifest import parse
from corral.plan import EventsPlan, Plan, ServicePlan, resolve

BASE = """
name: {system}
services:
  rides: {{command: "true"}}
  matching: {{command: "true"}}
  tracking: {{command: "true"}}
events:
  delivery: {{max_deliveries: 4, backoff: [1s, 2s], ack_wait: 10s}}
  topics:
    ride.requested:
      producers: [rides]
      consumers: [matching, tracking]
      max_age: 24h
      max_bytes: 1Mi
    ride.updated:
      producers: [rides]
      consumers: [tracking]
      ordering: per-key
      partitions: 2
      retention: interest
"""


def plan_of(system: str, extra: str = "") -> EventsPlan:
    manifest = parse(BASE.format(system=system) + extra, Path("/srv/corral.yaml"))
    events = resolve(manifest, python="python").events
    assert events is not None
    return events


class Ctx:
    """A minimal RuntimeContext: runs the component as a process and polls readiness."""

    def __init__(self, plan: Any) -> None:
        self.plan = plan
        self.procs: list[subprocess.Popen[bytes]] = []
        self.components: list[ServicePlan] = []

    def free_port(self) -> int:
        return free_port()

    async def run_component(self, service: ServicePlan) -> None:
        self.components.append(service)
        self.procs.append(subprocess.Popen(list(service.argv), cwd=service.workdir))
        assert service.readiness is not None
        url = f"http://127.0.0.1:{service.fixed_port}{service.readiness.path}"
        for _ in range(500):
            try:
                with urllib.request.urlopen(url, timeout=0.5) as response:
                    if response.status == 200:
                        return
            except OSError:
                await asyncio.sleep(0.02)
        raise AssertionError("nats-server not ready")

    async def restart(self) -> None:
        """Kill the (one) component and start it again, as the supervisor would."""
        self.kill()
        component = self.components.pop()
        await self.run_component(component)

    def monitor(self, path: str) -> Any:
        """GET on the running nats-server's monitoring port (JSON)."""
        port = self.components[-1].fixed_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return json.load(response)

    def kill(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        self.procs.clear()


@contextlib.asynccontextmanager
async def embedded_bus(
    manifest_text: str, folder: Path
) -> AsyncIterator[tuple[BrokerAddon, Ctx, Plan]]:
    """The broker addon started on ``manifest_text`` (its own nats-server); stopped after."""
    plan = resolve(parse(manifest_text, folder / "corral.yaml"), python="python")
    ctx = Ctx(plan)
    addon = BrokerAddon(environ={})
    try:
        await addon.start(ctx)  # type: ignore[arg-type]
        yield addon, ctx, plan
    finally:
        await addon.stop()
        ctx.kill()
