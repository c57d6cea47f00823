"""shipping: consumes ``order.placed`` and tells orders over HTTP that it shipped."""

from __future__ import annotations

from pydantic import BaseModel

from corral.sdk import Service

svc = Service("shipping")


class OrderPlaced(BaseModel):
    order_id: str


@svc.events.subscribe("order.placed")
async def on_placed(event: OrderPlaced) -> None:
    (await svc.client("orders").post(f"/orders/{event.order_id}/shipped")).raise_for_status()
