"""A service whose one endpoint takes a while: requests pile up in flight under load."""

from __future__ import annotations

import asyncio

from corral.sdk import Service

svc = Service("slow")


@svc.get("/work")
async def work() -> dict[str, str]:
    await asyncio.sleep(0.3)
    return {"served_by": svc.instance}
