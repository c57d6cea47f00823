"""The telemetry addon's bus sampler when the broker starts beside it (addons start
together): no bus *yet* is tried again, no ``events`` section ends the sampler."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from corral.manifest import parse
from corral.plan import resolve
from corral.runtime.registry import Registry
from corral.telemetry import TelemetryAddon

_SERVICES = "services:\n  producer: {command: [python, -c, pass], database: none}\n"
_EVENTS = "events:\n  topics:\n    thing.happened: {producers: [producer], consumers: []}\n"
_OVERVIEW = {"topics": [{"topic": "thing.happened", "messages": 3, "consumers": []}]}


class _Context:
    """What the addon reads of the runtime at start."""

    def __init__(self, root: Path, events: bool) -> None:
        text = "name: bus\n" + _SERVICES + (_EVENTS if events else "")
        self.plan = resolve(parse(text, root / "corral.yaml"), python=sys.executable)
        self.registry = Registry()
        self.state_dir = root / ".corral"


@pytest.mark.parametrize(
    ("events", "answers", "sampled"),
    [
        # The broker is still starting for the first two tries, then answers.
        (True, [None, None, _OVERVIEW], True),
        # No events section: the bus is absent for good, the sampler ends.
        (False, [None], False),
    ],
)
async def test_bus_sampler_waits_for_a_starting_broker(
    tmp_path: Path, events: bool, answers: list[Any], sampled: bool
) -> None:
    asked = asyncio.Event()

    async def bus() -> dict[str, Any] | None:
        answer = answers.pop(0) if answers else None
        if not answers:
            asked.set()
        return answer

    addon = TelemetryAddon(event_bus=bus)
    await addon.start(_Context(tmp_path, events))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(10):
            await asyncio.wait_for(asked.wait(), timeout=10)
            sampler = next(t for t in addon._tasks if t.get_name() == "corral-telemetry-bus")
            if not sampled:
                await sampler  # it ends by itself
        assert bool(addon.bus_samples) is sampled
        assert sampler.done() is not sampled
    finally:
        await addon.stop()
