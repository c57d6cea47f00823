"""Log capture and follow; the addon contract (components, environment, draining hook)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

import pytest
from runtime_helpers import SVC, service, wait_until

from corral.manifest import DatabaseEngine, RestartPolicy
from corral.plan import CheckKind, CheckPlan, DatabasePlan, RestartPlan, ServicePlan
from corral.runtime.addon import Addon, RuntimeContext
from corral.runtime.registry import InstanceRecord, InstanceState

pytestmark = pytest.mark.timeout(30)


async def test_logs_are_captured_per_instance_and_followed(system) -> None:
    """stdout and stderr lines land timestamped in <state_dir>/logs/<instance>.log as JSON
    lines; read filters by service and tail; follow yields new lines as they arrive."""
    orch, _ = system({"web": service(), "other": service(readiness=False)})
    began = time.time()
    await orch.up()
    await wait_until(lambda: len(orch.logs.read(["web"])) >= 2)
    lines = orch.logs.read(["web"])
    assert {(line.stream, line.line) for line in lines} >= {
        ("stdout", "hello from web-1 pid " + str(orch.registry.snapshot().get("web-1").pid)),
        ("stderr", "warming up web-1"),
    }
    assert all(line.service == "web" and began <= line.t <= time.time() for line in lines)
    stored = [
        json.loads(raw) for raw in (orch.state_dir / "logs" / "web-1.log").read_text().splitlines()
    ]
    assert set(stored[0]) == {"t", "service", "instance", "stream", "line"}
    assert len(orch.logs.read(tail=1)) == 1

    seen: list[str] = []

    async def follow() -> None:
        async for line in orch.logs.follow(["web"]):
            seen.append(line.line)

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0)
    os.kill(orch.registry.snapshot().get("web-1").pid, signal.SIGKILL)
    await wait_until(lambda: any(s.startswith("hello from web-1") for s in seen))
    follower.cancel()
    assert not any("other-1" in s for s in seen)


class RecordingAddon(Addon):
    """Runs a component, adds a variable to services, records drained instances."""

    name = "recording"

    def __init__(self) -> None:
        self.drained: list[InstanceRecord] = []
        self.order: list[str] = []

    async def start(self, ctx: RuntimeContext) -> None:
        self.order.append("start")
        port = ctx.free_port()
        await ctx.run_component(
            ServicePlan(
                name="broker",
                argv=(sys.executable, SVC),
                workdir=ctx.plan.root,
                replicas=1,
                fixed_port=port,
                env={},
                readiness=CheckPlan(CheckKind.TCP, period=0.2),
                liveness=None,
                startup=None,
                depends_on={},
                restart=RestartPlan(RestartPolicy.ALWAYS, 0.1, 1.0, 2.0, 10.0),
                stop_grace_period=2.0,
                database=DatabasePlan(DatabaseEngine.NONE, "broker"),
            )
        )
        self.port = port

    def environment(self, service: ServicePlan) -> dict[str, str]:
        return {"BROKER_PORT": str(self.port)}

    async def before_instance_stop(self, record: InstanceRecord) -> None:
        assert record.state is InstanceState.DRAINING
        assert not record.serving
        self.drained.append(record)

    async def stop(self) -> None:
        self.order.append("stop")

    def status(self) -> dict[str, Any]:
        return {"broker_port": self.port}


async def test_addon_components_environment_and_draining(system) -> None:
    """An addon's component is supervised like an instance (component=True, ready before
    services start); its environment reaches services; instances are drained through it
    before SIGTERM; status merges its fields."""
    addon = RecordingAddon()
    orch, _ = system({"web": service(env={"SVC_PRINT_ENV": "BROKER_PORT"})}, addons=[addon])
    await orch.up()
    broker = orch.registry.snapshot().get("broker-1")
    assert broker.component
    assert broker.serving
    assert broker.port == addon.port
    assert f"BROKER_PORT={addon.port}" in {line.line for line in orch.logs.read(["web"])}
    assert orch.status()["broker_port"] == addon.port
    assert orch.status()["services"]["broker"]["component"] is True
    await orch.down()
    assert [r.instance for r in addon.drained] == ["web-1", "broker-1"]
    assert addon.order == ["start", "stop"]
