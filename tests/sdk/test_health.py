"""Readiness aggregates checks; lifecycle components start in order and stop in reverse."""

from __future__ import annotations

import pytest

from corral import contract
from corral.sdk import PROBLEM_JSON, Service
from corral.sdk.testing import serve_in_process


async def test_liveness_and_readiness_when_all_checks_pass() -> None:
    """With passing checks, both probes answer 200 and readiness lists each check."""
    svc = Service("healthy")

    async def broker() -> str:
        return "connected"

    svc.add_readiness_check("broker", broker)
    async with serve_in_process(svc) as client:
        live = await client.get(contract.LIVENESS_PATH)
        ready = await client.get(contract.READINESS_PATH)
    assert live.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["checks"]["broker"]["ok"] is True
    assert ready.json()["checks"]["broker"]["detail"] == "connected"


async def test_failing_check_makes_readiness_503_problem() -> None:
    """A raising check and a False check turn readiness 503, naming both in the detail."""
    svc = Service("sick")

    async def broken() -> None:
        raise ConnectionError("nats down")

    async def nope() -> bool:
        return False

    async def fine() -> None:
        return None

    svc.add_readiness_check("broker", broken)
    svc.add_readiness_check("cache", nope)
    svc.add_readiness_check("fine", fine)
    async with serve_in_process(svc) as client:
        response = await client.get(contract.READINESS_PATH)
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["detail"] == "failing: broker, cache"
    assert body["checks"]["broker"] == {"ok": False, "detail": "ConnectionError: nats down"}
    assert body["checks"]["fine"]["ok"] is True


async def test_slow_check_times_out() -> None:
    """A check slower than its timeout fails instead of hanging the probe."""
    import asyncio

    svc = Service("slowcheck")

    async def hangs() -> None:
        await asyncio.Event().wait()

    svc.add_readiness_check("hangs", hangs, timeout=0.05)
    async with serve_in_process(svc) as client:
        response = await client.get(contract.READINESS_PATH)
    assert response.status_code == 503
    assert "timed out" in response.json()["checks"]["hangs"]["detail"]


async def test_readiness_false_while_draining() -> None:
    """Once draining begins, readiness is 503 although every check passes."""
    svc = Service("drainer")
    async with serve_in_process(svc) as client:
        assert (await client.get(contract.READINESS_PATH)).status_code == 200
        svc.health.begin_drain()
        response = await client.get(contract.READINESS_PATH)
    assert response.status_code == 503
    assert "shutdown" in response.json()["checks"]


async def test_lifecycle_order() -> None:
    """Components start in registration order and stop in reverse; a failing stop is logged."""
    svc = Service("ordered")
    calls: list[str] = []

    class Component:
        def __init__(self, name: str, fail_stop: bool = False) -> None:
            self.name = name
            self.fail_stop = fail_stop

        async def start(self) -> None:
            calls.append(f"start {self.name}")

        async def stop(self) -> None:
            calls.append(f"stop {self.name}")
            if self.fail_stop:
                raise RuntimeError("stop failed")

    svc.add_lifecycle(Component("events"))

    @svc.on_startup
    async def warm() -> None:
        calls.append("startup hook")

    @svc.on_shutdown
    async def cool() -> None:
        calls.append("shutdown hook")

    svc.add_lifecycle(Component("client", fail_stop=True))
    async with serve_in_process(svc):
        calls.append("serving")
    assert calls == [
        "start events",
        "startup hook",
        "start client",
        "serving",
        "stop client",
        "shutdown hook",
        "stop events",
    ]


async def test_failed_start_stops_started_components() -> None:
    """If a component fails to start, the ones already started are stopped again."""
    svc = Service("halfway")
    calls: list[str] = []

    @svc.on_startup
    async def first() -> None:
        calls.append("first")

    @svc.on_shutdown
    async def first_stop() -> None:
        calls.append("first stopped")

    @svc.on_startup
    async def second() -> None:
        raise RuntimeError("cannot connect")

    with pytest.raises(RuntimeError, match="cannot connect"):
        async with serve_in_process(svc):
            pass
    assert calls == ["first", "first stopped"]


def test_add_lifecycle_rejects_objects_without_start_stop() -> None:
    """A component without async start/stop is refused at registration."""
    with pytest.raises(TypeError):
        Service("typed").add_lifecycle(object())  # type: ignore[arg-type]


async def test_event_bus_starts_before_components_registered_ahead_of_it() -> None:
    """A startup hook registered before ``svc.events`` was first used may still publish:
    the bus is infrastructure, started ahead of every user component and stopped after."""
    from pydantic import BaseModel

    from corral.sdk.events import MemoryBroker

    class Tick(BaseModel):
        n: int

    svc = Service("early")
    published: list[str] = []

    @svc.on_startup
    async def announce() -> None:
        published.append(await svc.events.publish("clock.tick", Tick(n=1)))

    @svc.on_shutdown
    async def last_word() -> None:
        published.append(await svc.events.publish("clock.tick", Tick(n=2)))

    svc.events.topic("clock.tick", Tick)
    svc.events.configure(transport=MemoryBroker().transport())
    async with serve_in_process(svc):
        pass
    assert len(published) == 2
