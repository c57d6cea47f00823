"""producer: publishes a Thing per request."""

from __future__ import annotations

import os

from things import Thing

from corral.sdk import Service

svc = Service("producer")
events = svc.events  # started with the service (it only publishes)


@svc.post("/emit/{n}")
async def emit(n: int) -> dict[str, int]:
    await events.publish("thing.happened", Thing(n=n))
    return {"published": n}


@svc.get("/bus")
async def bus() -> dict[str, bool]:
    return {"has_nats_url": "NATS_URL" in os.environ}
