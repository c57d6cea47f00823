"""Events in a real system: `corral up -d` of orders (publishes only) and shipping
(consumes, then calls orders back), on a tmp copy of tests/sdk/events/shop, with the
embedded NATS, the gateway and the control plane's trace store."""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from events.helpers import eventually
from testkit import corral

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SHOP = Path(__file__).with_name("shop")

MANIFEST = """
name: shop
services:
  orders:
    app: orders:svc
    readiness: {http: /readyz, period: 100ms}
    database: none
    env: {OTEL_BSP_SCHEDULE_DELAY: "100"}
  shipping:
    app: shipping:svc
    calls: [orders]
    readiness: {http: /readyz, period: 100ms}
    database: none
    env: {OTEL_BSP_SCHEDULE_DELAY: "100"}
gateway:
  routes:
    - {match: {prefix: /orders}, service: orders}
events:
  delivery: {max_deliveries: 3, backoff: [100ms]}
  topics:
    order.placed:
      producers: [orders]
      consumers: [shipping]
"""


def run_corral(root: Path, *args: str) -> str:
    """``corral ARGS`` in ``root``; its output (fails the test on a non-zero exit)."""
    done = corral(*args, cwd=root, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@dataclass
class Shop:
    root: Path
    api: str
    gateway: str
    token: str

    async def admin(self, path: str, **params: Any) -> Any:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(
                self.api + path, params=params, headers={"authorization": f"Bearer {self.token}"}
            )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """The system, up and ready; taken down afterwards."""
    root = tmp_path_factory.mktemp("shop")
    for app in SHOP.glob("*.py"):
        shutil.copy(app, root / app.name)
    (root / "corral.yaml").write_text(MANIFEST)
    try:
        run_corral(root, "up", "-d")
        api = json.loads((root / ".corral" / "api.json").read_text())["url"]
        token = (root / ".corral" / "token").read_text().strip()
        status = httpx.get(
            f"{api}/v1/status", headers={"authorization": f"Bearer {token}"}, timeout=10
        )
        assert status.status_code == 200, status.text
        yield Shop(root, api, status.json()["gateway_url"], token)
    finally:
        corral("down", cwd=root, timeout=60)


async def test_a_service_that_only_publishes_publishes_on_its_first_request(
    shop: Shop,
) -> None:
    """orders never touches svc.events before a request: its first publish succeeds
    (the manifest names it a producer, so its events started with it) and the event
    reaches shipping, which calls orders back."""
    async with httpx.AsyncClient(base_url=shop.gateway, timeout=10) as gateway:
        response = await gateway.post("/orders/first")
        assert response.status_code == 200, response.text + run_corral(shop.root, "logs")

        async def shipped() -> bool:
            return bool((await gateway.get("/orders/first")).json()["shipped"])

        await eventually(shipped, what="shipping to handle the event and call orders back")


async def test_http_publish_consume_http_is_one_trace(shop: Shop) -> None:
    """A request to orders publishes; shipping consumes and calls orders: the server
    span, the PRODUCER span, the CONSUMER span, shipping's client span and orders'
    second server span arrive through the real OTLP exporters in one trace, each the
    child of the one before, read back from the control plane's /v1/traces."""
    trace_id = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{shop.gateway}/orders/traced", headers=headers)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = []

    async def complete() -> bool:
        listed = await shop.admin("/v1/traces", service="shipping", limit=500)
        if trace_id not in {t["trace_id"] for t in listed}:
            return False
        trace = await shop.admin(f"/v1/traces/{trace_id}")
        found[:] = trace["spans"]
        return "POST /orders/{order_id}/shipped" in {s["name"] for s in found}

    await eventually(complete, what="the whole chain in one trace")

    def one(service: str, kind: str, name: str | None = None) -> dict[str, Any]:
        spans = [
            s
            for s in found
            if (s["service"], s["kind"]) == (service, kind) and name in (None, s["name"])
        ]
        assert len(spans) == 1, (service, kind, name, found)
        return spans[0]

    placed = one("orders", "server", "POST /orders/{order_id}")
    publish = one("orders", "producer", "order.placed publish")
    process = one("shipping", "consumer", "order.placed process")
    call = one("shipping", "client")
    shipped = one("orders", "server", "POST /orders/{order_id}/shipped")
    chain = [placed, publish, process, call, shipped]
    assert [s["parent_span_id"] for s in chain[1:]] == [s["span_id"] for s in chain[:-1]]
    assert publish["attributes"]["messaging.destination.name"] == "order.placed"
    assert process["attributes"]["messaging.message.id"] == response.json()["event_id"]
    assert process["attributes"]["messaging.consumer.group.name"] == "shipping"
