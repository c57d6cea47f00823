"""orders: takes orders over HTTP and only publishes ``order.placed``.

It never touches ``svc.events`` before its first request, as docs/events.md shows a
publishing service: the manifest naming it a producer is what starts its events.
"""

from __future__ import annotations

from pydantic import BaseModel

from corral.sdk import Service

svc = Service("orders")
shipped: set[str] = set()


class OrderPlaced(BaseModel):
    order_id: str


@svc.post("/orders/{order_id}")
async def place(order_id: str) -> dict[str, str]:
    event_id = await svc.events.publish("order.placed", OrderPlaced(order_id=order_id))
    return {"order_id": order_id, "event_id": event_id}


@svc.post("/orders/{order_id}/shipped")
async def mark_shipped(order_id: str) -> dict[str, bool]:
    shipped.add(order_id)
    return {"shipped": True}


@svc.get("/orders/{order_id}")
async def show(order_id: str) -> dict[str, bool]:
    return {"shipped": order_id in shipped}
