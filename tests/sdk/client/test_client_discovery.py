"""Discovery against the real control-plane registry endpoint, and svc.client in a Service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from corral import contract
from corral.api import create_app
from corral.runtime.registry import InstanceRecord, InstanceState, Registry
from corral.sdk import Service
from corral.sdk.client import (
    CIRCUITS_PATH,
    Balancing,
    ClientTelemetry,
    NoInstancesError,
    Policy,
    RegistryResolver,
    ServiceClient,
    resolver_from_env,
)
from corral.sdk.testing import serve_in_process

from .conftest import Upstream, free_port

TOKEN = "discovery-token"


class Target:
    """The slice of a running system the API needs for the registry endpoints."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def has_service(self, service: str) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {}


@pytest.fixture
async def registry_api() -> AsyncIterator[tuple[Registry, str]]:
    """A real Registry behind the real control-plane API, served by uvicorn on a free port."""
    registry = Registry()

    async def shutdown() -> None:
        return None

    app = create_app(
        Target(registry),  # type: ignore[arg-type]
        admin_token="admin-token",
        discovery_token=TOKEN,
        request_shutdown=shutdown,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    yield registry, f"http://127.0.0.1:{port}"
    server.should_exit = True
    server.force_exit = True
    await asyncio.wait_for(task, 10)


def record(upstream: Upstream, instance: str, *, ready: bool = True) -> InstanceRecord:
    return InstanceRecord(
        service="fault",
        instance=instance,
        host="127.0.0.1",
        port=upstream.port,
        state=InstanceState.RUNNING,
        ready=ready,
    )


async def test_instances_leaving_the_registry_stop_receiving_calls(
    registry_api: tuple[Registry, str], upstreams: tuple[Upstream, Upstream], upstream: Upstream
) -> None:
    """Round robin spreads calls over both instances; a draining one gets no more calls."""
    registry, url = registry_api
    a, b = upstreams
    registry.put(record(a, "fault-1"))
    registry.put(record(b, "fault-2"))
    registry.put(record(b, "fault-3", ready=False))  # not serving: never called
    env = {contract.DISCOVERY: f"registry+{url}", contract.DISCOVERY_TOKEN: TOKEN}
    resolver = resolver_from_env(env)
    assert isinstance(resolver, RegistryResolver)
    client = ServiceClient("fault", resolver=resolver, policy=Policy(), telemetry=ClientTelemetry())
    try:
        seen = [(await client.get("/work")).json()["instance"] for _ in range(6)]
        assert sorted(seen) == ["fault-a"] * 3 + ["fault-b"] * 3
        assert resolver.endpoints("fault") == (a.url, b.url)

        changed_at = time.perf_counter()
        version = registry.update("fault-2", state=InstanceState.DRAINING).version
        async with asyncio.timeout(5):
            while resolver.version < version:
                await asyncio.sleep(0.001)
        took_ms = (time.perf_counter() - changed_at) * 1000
        print(f"registry change applied by the client after {took_ms:.2f} ms")
        before = await b.attempts()
        seen = [(await client.get("/work")).json()["instance"] for _ in range(10)]
        assert seen == ["fault-a"] * 10
        assert await b.attempts() == before

        registry.remove_many(["fault-1", "fault-2", "fault-3"])
        async with asyncio.timeout(5):
            while resolver.version < registry.snapshot().version:
                await asyncio.sleep(0.001)
        with pytest.raises(NoInstancesError):
            await client.get("/work")
    finally:
        await client.aclose()
        await resolver.stop()  # given to the client, so not the client's to stop


async def test_least_outstanding_prefers_the_idle_instance(
    upstreams: tuple[Upstream, Upstream], upstream: Upstream
) -> None:
    """With one instance hanging on a call, least-outstanding sends the next calls elsewhere."""
    from corral.sdk.client import StaticResolver

    a, b = upstreams
    client = ServiceClient(
        "fault",
        resolver=StaticResolver({"fault": (a.url, b.url)}),
        policy=Policy(timeout=10),
        telemetry=ClientTelemetry(),
        balancing=Balancing.LEAST_OUTSTANDING,
    )
    try:
        await a.mode("hang")
        first = asyncio.create_task(client.get("/work"))
        await a.wait_for("in_flight", 1)
        seen = [(await client.get("/work")).json()["instance"] for _ in range(4)]
        assert seen == ["fault-b"] * 4
        await a.mode("ok")
        assert (await first).json()["instance"] == "fault-a"
    finally:
        await client.aclose()


async def test_service_client_carries_the_incoming_deadline(upstream: Upstream) -> None:
    """svc.client: an incoming deadline header bounds the outgoing call; circuits are listed."""
    svc = Service("front")

    @svc.get("/quote")
    async def quote() -> dict[str, Any]:
        response = await svc.client("fault").get("/work")
        return {"from": response.json()["instance"]}

    env = {contract.DISCOVERY: "static", contract.service_url_variable("fault"): upstream.url}
    async with serve_in_process(svc, env=env) as http:
        sent = time.time() + 1.5
        response = await http.get("/quote", headers={contract.DEADLINE_HEADER: f"{sent:.6f}"})
        assert response.json() == {"from": "fault-a"}
        circuits = (await http.get(CIRCUITS_PATH)).json()
        client = svc.client("fault")
    last = (await upstream.stats())["last"]
    headers = {k.lower(): v for k, v in last["headers"].items()}
    # sent on in whole milliseconds, rounded down: never later than the incoming one
    assert sent - 1e-3 <= float(headers[contract.DEADLINE_HEADER]) <= sent + 1e-6
    assert headers[contract.CALLER_HEADER] == "front"
    assert contract.REQUEST_ID_HEADER in headers
    assert circuits["circuits"] == [
        {"target": "fault", "state": "closed", "consecutive_failures": 0, "retry_after": 0.0}
    ]
    assert client._session is None  # closed with the service
