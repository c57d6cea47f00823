"""front: GET /chain calls back, so one request crosses two services."""

from __future__ import annotations

from corral.sdk import Service

svc = Service("front")


@svc.get("/chain")
async def chain() -> dict[str, int]:
    response = await svc.client("back").get("/sleep/1")
    return {"back_status": response.status}
