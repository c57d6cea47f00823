"""Helpers for runtime tests: manifests from dicts, event recording, polling with
timeouts (never fixed sleeps to wait for a state), process-table checks."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from corral.manifest import parse
from corral.plan import Plan, resolve
from corral.runtime.events import RuntimeEvent

SVC = str(Path(__file__).parent / "fixtures" / "svc.py")


def service(
    *,
    env: dict[str, Any] | None = None,
    readiness: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """A manifest service running the fixture; ``readiness`` adds a fast HTTP check."""
    spec: dict[str, Any] = {
        "command": [sys.executable, SVC],
        "database": "none",
        "stop_grace_period": "2s",
        "env": {k: str(v) for k, v in (env or {}).items()},
    }
    if readiness:
        spec["readiness"] = {"http": "/readyz", "period": "200ms", "timeout": "1s"}
    spec.update(extra)
    return spec


def make_plan(root: Path, services: dict[str, Any], name: str = "test") -> tuple[Any, Plan]:
    path = root / "corral.yaml"
    text = json.dumps({"name": name, "services": services}, indent=2)
    path.write_text(text)
    manifest = parse(text, path)
    return manifest, resolve(manifest, python=sys.executable)


class Recorder:
    """Collects events with the monotonic time they arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[float, RuntimeEvent]] = []

    def __call__(self, event: RuntimeEvent) -> None:
        self.events.append((time.monotonic(), event))

    def of(self, kind: type[RuntimeEvent]) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]


async def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll ``predicate`` until truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def gone(pid: int) -> bool:
    """No such process, or only a zombie left for init to reap."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
