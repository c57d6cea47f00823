"""The rollout engine's own bookkeeping (config/_rollout.py): what it keeps per instance,
what it waits for, and what it leaves running."""

from __future__ import annotations

import asyncio
from pathlib import Path

from config_helpers import Instance, applied, running


async def test_publishing_wakes_watchers_without_a_background_task(tmp_path: Path) -> None:
    """A publish wakes the watches at once and starts no task of its own: the event loop
    keeps tasks only weakly, so a fire-and-forget notifier could vanish mid-flight."""
    async with running(tmp_path, applied) as (control, _, instances), asyncio.timeout(5):
        while not all(instance.seen for instance in instances):
            await asyncio.sleep(0)
        before = asyncio.all_tasks()
        newer = control.current.model_copy(update={"version": control.current.version + 1})
        control.rollout.publish(newer, ["web"])
        assert asyncio.all_tasks() == before
        while not all(len(instance.seen) == 2 for instance in instances):
            await asyncio.sleep(0)


async def test_reports_of_instances_that_are_gone_are_forgotten(tmp_path: Path) -> None:
    """Per-instance reports are kept only for instances the registry still has, so a
    system that scales up and down for weeks does not grow the control plane."""
    async with running(tmp_path, applied) as (control, runtime, instances):
        await control.set("web", {"LEVEL": "warn"}, author="ada")
        assert {"web-1", "web-2"} <= set(control.rollout.reported())
        await instances[0].close()
        runtime.registry.remove("web-1")
        await control.set("web", {"LEVEL": "error"}, author="ada")
        assert set(control.rollout.reported()) == {"web-2"}


async def test_a_paused_instance_does_not_hold_up_a_change(tmp_path: Path) -> None:
    """An instance paused by chaos (SIGSTOP) cannot answer: the change does not wait the
    report timeout for it, and when every other instance applied it live, nothing is
    restarted (the paused one reads the version from its watch when it continues)."""
    async with running(tmp_path, applied) as (control, runtime, instances):
        await instances[1].close()
        stopped = Instance(control, "web-2", "web", lambda payload: None)  # never answers
        control.rollout.bind(runtime, unresponsive=lambda: {"web-2"})
        try:
            async with asyncio.timeout(5):
                while not stopped.seen:  # it watches (and then stops answering)
                    await asyncio.sleep(0)
            outcome = await control.set("web", {"LEVEL": "warn"}, author="ada")
        finally:
            await stopped.close()
    assert outcome.services == {"web": "applied live"}
    assert runtime.restarts == []


async def test_a_service_whose_every_instance_is_paused_is_restarted(tmp_path: Path) -> None:
    """With nobody able to answer, whether the change can be taken live is unknown: the
    safe rolling restart it is."""
    async with running(tmp_path, applied) as (control, runtime, _):
        control.rollout.bind(runtime, unresponsive=lambda: {"web-1", "web-2"})
        outcome = await control.set("web", {"LEVEL": "warn"}, author="ada")
    assert outcome.services == {"web": "rolling restart"}
    assert runtime.restarts == ["web"]
