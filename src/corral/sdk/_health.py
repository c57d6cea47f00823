"""Liveness, readiness and the in-flight request count that graceful shutdown waits on.

Readiness is false until start-up has finished, false again as soon as draining begins
(SIGTERM), and otherwise the conjunction of the registered checks, run concurrently, each
with its own timeout. A check is an ``async def`` that raises (its message is the detail)
or returns ``False`` to fail; any other return value passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Health", "ReadinessCheck"]

ReadinessCheck = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class _Check:
    fn: ReadinessCheck
    timeout: float


class Health:
    def __init__(self) -> None:
        self.started = False
        self.draining = False
        self._checks: dict[str, _Check] = {}
        self._in_flight = 0
        self._idle: asyncio.Event | None = None

    # -- checks ---------------------------------------------------------------------
    def add_check(self, name: str, fn: ReadinessCheck, *, timeout: float = 2.0) -> None:
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} is already registered")
        self._checks[name] = _Check(fn, timeout)

    def remove_check(self, name: str) -> None:
        self._checks.pop(name, None)

    async def _run(self, check: _Check) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            result = await asyncio.wait_for(check.fn(), check.timeout)
        except TimeoutError:
            return {"ok": False, "detail": f"timed out after {check.timeout:g}s"}
        except Exception as exc:
            return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        entry: dict[str, Any] = {"ok": result is not False}
        if isinstance(result, str):
            entry["detail"] = result
        entry["duration_ms"] = round((time.perf_counter() - start) * 1000, 2)
        return entry

    async def readiness(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """(ready, per-check results)."""
        if self.draining:
            return False, {"shutdown": {"ok": False, "detail": "draining: stop sending traffic"}}
        if not self.started:
            return False, {"startup": {"ok": False, "detail": "starting"}}
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        return all(r["ok"] for r in results), checks

    # -- draining -------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self._in_flight

    def request_started(self) -> None:
        self._in_flight += 1

    def request_finished(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0 and self._idle is not None:
            self._idle.set()

    def begin_drain(self) -> None:
        self.draining = True

    async def wait_idle(self, timeout: float) -> bool:  # noqa: ASYNC109 - a deadline, not a cancel scope
        """Wait until no request is in flight; False if the timeout came first."""
        if self._in_flight == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return self._in_flight == 0
        finally:
            self._idle = None
        return True
