"""plain: a service that uses no topic."""

from __future__ import annotations

import os

from corral.sdk import Service

svc = Service("plain")


@svc.get("/bus")
async def bus() -> dict[str, bool]:
    return {"has_nats_url": "NATS_URL" in os.environ}
