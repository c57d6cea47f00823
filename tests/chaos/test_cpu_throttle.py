"""The CPU throttle fault (``corral chaos cpu``) on a fake instance: it is stopped and
resumed every period while the throttle lasts, always left running at the end (stop or
expiry), and bad requests are refused with nothing begun."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from corral.chaos import ChaosError, Refusal, parse
from corral.control._chaos import Chaos


class FakeInstance:
    def __init__(self) -> None:
        self.id = "greeter-1"
        self.pgid: int | None = 4242
        self.paused_group: int | None = None
        self.stops = 0

    def pause(self) -> int | None:
        self.paused_group = self.pgid
        self.stops += 1
        return self.pgid

    def resume(self) -> bool:
        self.paused_group = None
        return True


class FakeOrchestrator:
    def __init__(self, instance: FakeInstance) -> None:
        self.one = instance

    def instance(self, instance_id: str) -> Any:
        if instance_id != self.one.id:
            raise KeyError(instance_id)
        return self.one


def chaos(tmp_path: Path, instance: FakeInstance) -> Chaos:
    return Chaos(FakeOrchestrator(instance), None, runs=tmp_path)  # type: ignore[arg-type]


async def until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_a_throttle_cycles_the_instance_and_leaves_it_running_when_stopped(
    tmp_path: Path,
) -> None:
    """Throttled 50%: stopped again and again; a pause of it meanwhile is refused;
    stopped, it is running and stays so."""
    instance = FakeInstance()
    c = chaos(tmp_path, instance)
    experiment = await c.cpu("greeter-1", 50, 30)
    assert (experiment.kind, experiment.percent) == ("cpu", 50)
    await until(lambda: instance.stops >= 3)
    with pytest.raises(ChaosError) as paused:
        await c.pause("greeter-1", 5)
    assert paused.value.refusal is Refusal.CONFLICT
    ended = await c.stop(experiment.id)
    assert (ended.state, ended.outcome) == ("stopped", "throttle ended: running freely")
    assert instance.paused_group is None
    stops = instance.stops
    await asyncio.sleep(0.3)  # no throttle task left to stop it again
    assert instance.stops == stops
    assert c.paused() == set()


async def test_a_throttle_ends_running_on_expiry(tmp_path: Path) -> None:
    """A 0.25 s throttle at 99%: expired by the control plane's timer, running after."""
    instance = FakeInstance()
    c = chaos(tmp_path, instance)
    await c.cpu("greeter-1", 99, 0.25)
    await until(lambda: not c.overview().active)
    assert c.overview().recent[0].state == "expired"
    assert instance.paused_group is None


@pytest.mark.parametrize(
    ("percent", "seconds", "words"),
    [(100, 10, "between 1% and 99%"), (0, 10, "between 1% and 99%"), (50, 7200, "3600s")],
)
async def test_bad_throttles_are_refused(
    tmp_path: Path, percent: int, seconds: float, words: str
) -> None:
    """Out of range: refused in words, nothing begun, the instance never stopped."""
    instance = FakeInstance()
    c = chaos(tmp_path, instance)
    with pytest.raises(ChaosError) as caught:
        await c.cpu("greeter-1", percent, seconds)
    assert words in caught.value.message
    assert (c.overview().active, instance.stops) == ([], 0)


def test_the_cpu_step_needs_a_share_below_a_pause() -> None:
    """In a file: `cpu` takes target, duration and percent (1-99), located errors else."""
    head = "title: t\nhypothesis:\n  probes: [{type: ready}]\nmethod:\n"
    ok = parse(head + "  - {action: cpu, target: rides, percent: 80, duration: 5s}\n", "e.yaml")
    assert ok.method[0].label == "cpu rides for 5s"
    with pytest.raises(Exception, match="1 to 99 percent"):
        parse(head + "  - {action: cpu, target: rides, percent: 100, duration: 5s}\n", "e.yaml")
    with pytest.raises(Exception, match="needs percent"):
        parse(head + "  - {action: cpu, target: rides, duration: 5s}\n", "e.yaml")
