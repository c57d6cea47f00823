"""back: answers after a requested delay, or fails (latencies and errors the tests know)."""

from __future__ import annotations

import asyncio

from corral.sdk import Problem, Service

svc = Service("back")


@svc.get("/sleep/{ms}")
async def sleep(ms: int) -> dict[str, int]:
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


@svc.get("/fail")
async def fail() -> dict[str, str]:
    raise Problem(503, "asked to fail")
