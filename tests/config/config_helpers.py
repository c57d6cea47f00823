"""Fakes shared by the config tests: an in-memory runtime and scripted watching instances,
around a real ConfigControl on a real store in a temporary directory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.config import ConfigControl, ConfigStore, Fingerprints, Report
from corral.manifest import parse
from corral.plan import Plan, ServicePlan, resolve
from corral.runtime.errors import StartError
from corral.runtime.registry import InstanceRecord, InstanceState, Registry

MANIFEST = """\
name: shop
services:
  web:
    command: python web.py
    replicas: 2
    env: {LEVEL: info, WORKERS: "2"}
    secrets: {API_KEY: {env: SHOP_API_KEY}}
  api:
    command: python api.py
"""
ENVIRON = {"SHOP_API_KEY": "sk-live-0123456789"}

Decide = Callable[[dict[str, Any]], Report | None]


@dataclass
class FakeRuntime:
    """The slice of the orchestrator a rollout uses, recording what it was asked."""

    plan: Plan
    registry: Registry = field(default_factory=Registry)
    restarts: list[str] = field(default_factory=list)
    fail_restart: bool = False
    plans: dict[str, ServicePlan] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.plans = dict(self.plan.services)

    def service_plan(self, service: str) -> ServicePlan:
        return self.plans[service]

    def reconfigure(self, service: ServicePlan) -> None:
        self.plans[service.name] = service

    async def restart(self, service: str, *, rolling: bool = False) -> None:
        assert rolling
        self.restarts.append(service)
        if self.fail_restart:
            self.fail_restart = False
            raise StartError(service, "crash loop: exit 2", instance=f"{service}-9")


class Instance:
    """A watching instance whose answer to each version is scripted by ``decide``."""

    def __init__(self, control: ConfigControl, name: str, service: str, decide: Decide) -> None:
        self.seen: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._run(control, name, service, decide))

    async def _run(self, control: ConfigControl, name: str, service: str, decide: Decide) -> None:
        async for payload in control.watch(name, service, since=None):
            self.seen.append(payload)
            report = decide(payload)
            if report is not None:
                await control.report(name, report)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def applied(payload: dict[str, Any]) -> Report:
    return Report(version=payload["version"], outcome="applied")


def needs_restart(payload: dict[str, Any]) -> Report:
    return Report(version=payload["version"], outcome="restart")


def rejects_debug(payload: dict[str, Any]) -> Report:
    if payload["values"].get("LEVEL") == "debug":
        problem = "service 'web' cannot start, its settings are invalid:\n  - LEVEL: bad"
        return Report(version=payload["version"], outcome="rejected", problems=[problem])
    return applied(payload)


def control_for(
    tmp_path: Path, runtime: FakeRuntime | None = None
) -> tuple[ConfigControl, FakeRuntime]:
    manifest = parse(MANIFEST, tmp_path / "corral.yaml")
    plan = resolve(manifest, python="python3")
    runtime = runtime or FakeRuntime(plan)
    control = ConfigControl(
        manifest=manifest,
        plan=plan,
        store=ConfigStore(tmp_path / "config"),
        fingerprints=Fingerprints(tmp_path / "config" / "fingerprint.key"),
        environ=ENVIRON,
        reload=lambda: (manifest, plan),
        api_url="http://127.0.0.1:1",
        author="ada",
        report_timeout=2.0,
    )
    control.bind(runtime)
    return control, runtime


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, decide: Decide | None
) -> AsyncIterator[tuple[ConfigControl, FakeRuntime, list[Instance]]]:
    """A started control with web's two instances serving (and watching, with ``decide``)."""
    control, runtime = control_for(tmp_path)
    await control.start()
    instances = []
    for name in ("web-1", "web-2"):
        runtime.registry.put(
            InstanceRecord("web", name, "127.0.0.1", 1, InstanceState.RUNNING, ready=True)
        )
        if decide is not None:
            instances.append(Instance(control, name, "web", decide))
    await asyncio.sleep(0)
    try:
        yield control, runtime, instances
    finally:
        for instance in instances:
            await instance.close()
