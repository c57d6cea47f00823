"""consumer: remembers every Thing it was delivered."""

from __future__ import annotations

import os

from things import Thing

from corral.sdk import Service

svc = Service("consumer")
seen: list[int] = []


@svc.events.subscribe("thing.happened")
async def on_thing(event: Thing) -> None:
    seen.append(event.n)


@svc.get("/seen")
async def get_seen() -> dict[str, list[int]]:
    return {"seen": seen}


@svc.get("/bus")
async def bus() -> dict[str, bool]:
    return {"has_nats_url": "NATS_URL" in os.environ}
