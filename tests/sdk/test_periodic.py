"""``@svc.every``: background rounds that survive failures and stop with the service."""

from __future__ import annotations

import asyncio

import pytest

from corral.sdk import Service, get_logger
from corral.sdk._periodic import Periodic
from corral.sdk.testing import capture_logs, serve_in_process


def running(name: str) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == f"periodic:{name}"]


async def test_rounds_run_after_a_failing_one_and_stop_with_the_service() -> None:
    """A round that raises is logged as a warning naming the task (traceback included)
    and the next round runs; once the service stops, no task is left running."""
    svc = Service("sweeper")
    rounds: list[int] = []
    third = asyncio.Event()

    @svc.every(0.001)
    async def sweep() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("database away")
        if len(rounds) == 3:
            third.set()

    with capture_logs() as logs:
        async with serve_in_process(svc):
            assert len(running("sweep")) == 1
            await asyncio.wait_for(third.wait(), 10)
        assert running("sweep") == []
    failed = [line for line in logs if line["event"] == "periodic task failed"]
    assert failed[0]["task"] == "sweep"
    assert failed[0]["level"] == "warning"
    assert "database away" in failed[0]["exception"]


async def test_the_interval_is_read_before_each_wait() -> None:
    """A function interval is called before every wait (it may follow live settings); an
    unusable answer is logged and replaced, never ends the loop."""
    answers = iter([0.001, -1.0, 0.001, 0.001])
    asked: list[int] = []
    done = asyncio.Event()

    def interval() -> float:
        asked.append(1)
        return next(answers, 0.001)

    async def work() -> None:
        if len(asked) >= 3:
            done.set()

    task = Periodic(work, interval=interval, name="tuned", log=get_logger())
    with capture_logs() as logs:
        await task.start()
        await asyncio.wait_for(done.wait(), 10)
        await task.stop()
    assert any(line["event"] == "periodic task interval must be > 0" for line in logs)


async def test_stop_lets_a_round_in_progress_finish() -> None:
    """Stopping while a round runs waits for it (within stop_timeout) instead of
    cancelling it halfway; a round that overstays is cancelled and logged."""
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def work() -> None:
        started.set()
        await release.wait()
        finished.append("round")

    task = Periodic(work, interval=0.001, name="careful", log=get_logger(), stop_timeout=30)
    await task.start()
    await asyncio.wait_for(started.wait(), 10)
    stopping = asyncio.create_task(task.stop())
    await asyncio.sleep(0)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 10)
    assert finished == ["round"]

    async def overstay() -> None:
        started.set()
        await asyncio.Event().wait()  # never ends

    stuck = Periodic(overstay, interval=0.001, name="stuck", log=get_logger(), stop_timeout=0.01)
    started.clear()
    with capture_logs() as logs:
        await stuck.start()
        await asyncio.wait_for(started.wait(), 10)
        await stuck.stop()
    assert running("stuck") == []
    assert any(line["event"] == "periodic task cancelled at stop" for line in logs)


def test_a_constant_interval_must_be_positive() -> None:
    """``every(0)`` is refused when the service is defined, not at its first round."""
    svc = Service("eager")
    with pytest.raises(ValueError, match="interval must be > 0"):

        @svc.every(0)
        async def spin() -> None:
            pass
