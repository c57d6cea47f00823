"""``svc.events`` in a Service's lifecycle, against a real nats-server: started with the
service when the manifest names it on a topic, on first publish when the environment
only names a bus, and a NotStartedError that says what to do when neither holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from corral import contract
from corral.sdk import DbSession, Service
from corral.sdk.events import NatsTransport, NotStartedError, TopicConfig, Topology
from corral.sdk.testing import serve_in_process
from events.helpers import NatsServer, delete_streams, eventually, stored

pytestmark = pytest.mark.integration


class Audited(BaseModel):
    what: str


def publisher(name: str) -> Service:
    """A service that only publishes, from a route, never touching svc.events before."""
    svc = Service(name)

    @svc.post("/audit/{what}")
    async def audit(what: str) -> dict[str, str]:
        return {"id": await svc.events.publish("audit.written", Audited(what=what))}

    return svc


def producer_env(service: str, bus: str, system: str) -> dict[str, str | None]:
    """What `corral up` gives ``service`` when the manifest names it the producer of
    audit.written."""
    topic = TopicConfig("audit.written", producers=(service,))
    topology = Topology(system=system, topics={topic.name: topic})
    return {contract.NATS_URL: bus, contract.EVENTS: topology.to_json()}


@pytest.fixture
async def bus(embedded_nats: NatsServer, system: str) -> AsyncIterator[str]:
    yield embedded_nats.url
    await delete_streams(embedded_nats.url, system)


async def test_named_producer_starts_events_with_the_service(bus: str, system: str) -> None:
    """CORRAL_EVENTS naming the service a producer starts its events before the first
    request: ready with a 'broker' check, and the first publish succeeds."""
    svc = publisher("audit")
    env = producer_env("audit", bus, system)
    async with serve_in_process(svc, env=env) as client:
        ready = await client.get(contract.READINESS_PATH)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["broker"]["ok"] is True
        assert (await client.post("/audit/first")).status_code == 200
    assert await stored(bus, system, "audit.written") == 1
    assert not svc.events.started, "stopped with the service"


async def test_first_publish_starts_events_when_only_a_bus_is_named(bus: str, system: str) -> None:
    """With NATS_URL but no topic naming the service, events start on the first publish
    (ten at once start them once), and stop with the service."""
    svc = publisher("audit")
    env = {contract.NATS_URL: bus, contract.SYSTEM: system, contract.EVENTS: None}
    async with serve_in_process(svc, env=env) as client:
        ready = await client.get(contract.READINESS_PATH)
        assert ready.status_code == 200, ready.text
        assert "broker" not in ready.json()["checks"], "nothing to check before first use"
        responses = await asyncio.gather(*(client.post(f"/audit/{n}") for n in range(10)))
        assert [r.status_code for r in responses] == [200] * 10, responses[0].text
        ready = await client.get(contract.READINESS_PATH)
        assert ready.json()["checks"]["broker"]["ok"] is True
    assert await stored(bus, system, "audit.written") == 10
    assert not svc.events.started


async def test_publish_without_a_bus_says_what_to_do() -> None:
    """A service started with no bus in its environment refuses a publish with what to
    do: name it in corral.yaml, set NATS_URL, or declare the topic at import."""
    svc = publisher("audit")
    env = {contract.NATS_URL: None, contract.EVENTS: None}
    async with serve_in_process(svc, env=env):
        with pytest.raises(NotStartedError) as caught:
            await svc.events.publish("audit.written", Audited(what="x"))
    message = str(caught.value)
    assert "'audit'" in message
    assert "producers" in message
    assert "corral.yaml" in message
    assert "NATS_URL" in message
    assert "svc.events.topic(" in message


async def test_first_publish_with_the_bus_away_says_so_and_retries(
    system: str, tmp_path: Path
) -> None:
    """A bus that does not answer fails the first publish within the transport's
    connect timeout, with the reason and the URL; the next publish tries again (here,
    once the bus is up)."""
    server = NatsServer(tmp_path / "nats")
    svc = publisher("audit")
    svc.events.configure(
        transport=NatsTransport(server.url, connect_timeout=0.5),
        topology=Topology(system=system),
    )
    async with serve_in_process(svc, env={contract.NATS_URL: server.url}):
        with pytest.raises(NotStartedError) as caught:
            await svc.events.publish("audit.written", Audited(what="x"))
        assert "could not start on first use" in str(caught.value)
        assert f"cannot reach NATS at {server.url} within 0.5s" in str(caught.value)
        assert "ConnectionRefusedError" in str(caught.value)
        await asyncio.to_thread(server.start)
        try:
            assert await svc.events.publish("audit.written", Audited(what="y"))
            assert await stored(server.url, system, "audit.written") == 1
        finally:
            await svc.events.stop()
            server.kill()


async def test_a_service_started_twice_in_one_process_publishes_both_times(
    bus: str, system: str
) -> None:
    """Stopped and started again (tests do, with serve_in_process), a service's events
    connect again, to the bus its environment names now, instead of reusing the closed
    connection."""
    svc = publisher("audit")
    env = producer_env("audit", bus, system)
    for run in range(2):
        async with serve_in_process(svc, env=env) as client:
            response = await client.post(f"/audit/{run}")
            assert response.status_code == 200, (run, response.text)
    assert await stored(bus, system, "audit.written") == 2


async def test_a_database_service_started_twice_relays_from_its_new_database(
    bus: str, system: str
) -> None:
    """The outbox relay of a service started again uses the database of this start
    (serve_in_process makes a new SQLite file each time), not the previous one's."""
    svc = Service("ledger", database=True)

    @svc.post("/entries/{n}")
    async def add(n: int, session: DbSession) -> dict[str, str]:
        return {
            "id": await svc.events.publish("audit.written", Audited(what=str(n)), session=session)
        }

    env = producer_env("ledger", bus, system)
    for run in range(2):
        async with serve_in_process(svc, env=env) as client:
            assert (await client.post(f"/entries/{run}")).status_code == 200

            async def drained() -> bool:
                return await svc.events.outbox_pending() == 0

            await eventually(drained, timeout=15, what=f"run {run}'s outbox row relayed")
    assert await stored(bus, system, "audit.written") == 2
