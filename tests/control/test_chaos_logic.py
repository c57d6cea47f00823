"""Chaos experiments' bookkeeping against an in-memory gateway and instances (the real
system is in test_chaos.py): each experiment ends exactly once, and a paused instance is
known as such."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from corral.control._chaos import Chaos
from corral.gateway import Fault


class SlowGateway:
    """Injects at once; clearing a fault waits until the test lets it finish."""

    def __init__(self) -> None:
        self.clearing = asyncio.Event()
        self.release = asyncio.Event()
        self.cleared: list[Fault] = []

    def routes_to(self, service: str) -> bool:
        return True

    async def inject(self, fault: Fault) -> None:
        pass

    async def clear(self, fault: Fault) -> None:
        self.clearing.set()
        await self.release.wait()
        self.cleared.append(fault)


class FakeInstance:
    def __init__(self, instance_id: str, pgid: int) -> None:
        self.id = instance_id
        self.pgid: int | None = pgid
        self.paused_group: int | None = None

    def pause(self) -> int | None:
        self.paused_group = self.pgid
        return self.pgid

    def resume(self) -> bool:
        pgid, self.paused_group = self.paused_group, None
        return pgid is not None and pgid == self.pgid


class FakeOrchestrator:
    def __init__(self, *instances: FakeInstance) -> None:
        self.instances = {i.id: i for i in instances}

    def instance(self, instance_id: str) -> Any:
        return self.instances[instance_id]


async def test_stopping_an_experiment_while_it_expires_ends_it_once(tmp_path: Path) -> None:
    """A stop that arrives while the expiry is undoing the fault neither undoes it again
    nor records a second end: one entry in `recent`, the fault cleared once."""
    gateway = SlowGateway()
    chaos = Chaos(FakeOrchestrator(), gateway, runs=tmp_path)  # type: ignore[arg-type]
    started = await chaos.fault("web", percent=100, abort_status=503, delay_ms=None, seconds=0.001)
    async with asyncio.timeout(5):
        await gateway.clearing.wait()  # expired; the undo is under way
        stop = asyncio.create_task(chaos.stop(started.id))
        await asyncio.sleep(0)
        gateway.release.set()
        stopped = await stop
        while not gateway.cleared:  # the expiry's own undo finishes too
            await asyncio.sleep(0)
        await asyncio.sleep(0)
    ended = [e for e in chaos.overview().recent if e.id == started.id]
    assert len(ended) == 1
    assert ended[0].state == "expired"
    assert stopped.state == "expired"
    assert len(gateway.cleared) == 1
    assert chaos.overview().active == []


async def test_paused_lists_instances_stopped_right_now(tmp_path: Path) -> None:
    """paused() names an instance while its pause holds, and not once its process was
    replaced (a new process in the slot was never stopped) or the pause ended."""
    web1, web2 = FakeInstance("web-1", 100), FakeInstance("web-2", 200)
    chaos = Chaos(FakeOrchestrator(web1, web2), None, runs=tmp_path)  # type: ignore[arg-type]
    first = await chaos.pause("web-1", 60)
    await chaos.pause("web-2", 60)
    assert chaos.paused() == {"web-1", "web-2"}
    web2.pgid = 201  # liveness failed: the slot runs a new process
    assert chaos.paused() == {"web-1"}
    await chaos.stop(first.id)
    assert chaos.paused() == set()
    await chaos.close()
