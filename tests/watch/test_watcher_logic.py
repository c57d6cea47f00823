"""The watch loop's decisions, against an in-memory target (no processes)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from corral.manifest import parse
from corral.plan import resolve
from corral.watch import (
    ManifestChanged,
    ManifestOutcome,
    Reloaded,
    ReloadFailed,
    Reloading,
    ReloadOutcome,
    SourceMap,
    Watcher,
    WatchEvent,
)

MANIFEST = """name: hello
services:
  greeter: {app: greeter.app:svc}
  front: {app: front.app:svc, depends_on: [greeter]}
"""

TAIL = (
    "Traceback (most recent call last):",
    '  File "{root}/greeter/app.py", line 3',
    "    def (:",
    "SyntaxError: invalid syntax",
)


class FakeTarget:
    def __init__(self, failing: set[str] | None = None, root: Path | None = None) -> None:
        self.calls: list[str] = []
        self.failing = failing or set()
        self.root = root

    async def reload(self, service: str) -> ReloadOutcome:
        self.calls.append(service)
        await asyncio.sleep(0)
        if service in self.failing:
            tail = tuple(line.format(root=self.root) for line in TAIL)
            return ReloadOutcome(service, False, "exited with code 1", tail)
        if service == "front" and "boom" in self.failing:
            raise ConnectionError("the control plane went away")
        return ReloadOutcome(service, True)

    async def apply_manifest(self) -> ManifestOutcome:
        return ManifestOutcome()


def watcher(tmp_path: Path, target: FakeTarget) -> tuple[Watcher, list[WatchEvent]]:
    for folder in ("greeter", "front"):
        (tmp_path / folder).mkdir()
    path = tmp_path / "corral.yaml"
    path.write_text(MANIFEST)
    plan = resolve(parse(MANIFEST, path), python=sys.executable)
    events: list[WatchEvent] = []
    return Watcher(SourceMap(plan, [path]), target, events.append, root=tmp_path), events


async def test_each_affected_service_reloads_once_per_batch(tmp_path: Path) -> None:
    """A thousand changed files in two services: two reloads, and both reported."""
    target = FakeTarget()
    loop, events = watcher(tmp_path, target)
    paths = [tmp_path / "greeter" / f"m{i}.py" for i in range(500)]
    paths += [tmp_path / "front" / f"m{i}.py" for i in range(500)]
    await loop.handle(paths)
    assert sorted(target.calls) == ["front", "greeter"]
    assert isinstance(events[0], Reloading)
    assert {e.service for e in events if isinstance(e, Reloaded)} == {"front", "greeter"}


async def test_unrelated_files_reload_nothing(tmp_path: Path) -> None:
    """A README saved next to the manifest is no reload and no output."""
    target = FakeTarget()
    loop, events = watcher(tmp_path, target)
    await loop.handle([tmp_path / "README.md"])
    assert target.calls == []
    assert events == []
    assert loop.batches == 0


async def test_code_that_cannot_start_is_shown_with_file_and_line(tmp_path: Path) -> None:
    """A failed reload reports where the new code broke; other services still reload."""
    target = FakeTarget(failing={"greeter"}, root=tmp_path)
    loop, events = watcher(tmp_path, target)
    await loop.handle([tmp_path / "greeter/app.py", tmp_path / "front/app.py"])
    failed = [e for e in events if isinstance(e, ReloadFailed)]
    assert len(failed) == 1
    assert failed[0].service == "greeter"
    assert failed[0].located is not None
    assert (failed[0].located.file, failed[0].located.line) == (tmp_path / "greeter/app.py", 3)
    assert [e.service for e in events if isinstance(e, Reloaded)] == ["front"]


async def test_a_target_error_is_reported_not_raised(tmp_path: Path) -> None:
    """The control plane going away mid-reload is a line on the terminal, not a crash."""
    target = FakeTarget(failing={"boom"})
    loop, events = watcher(tmp_path, target)
    await loop.handle([tmp_path / "front/app.py"])
    failed = [e for e in events if isinstance(e, ReloadFailed)]
    assert failed
    assert "went away" in failed[0].reason


async def test_a_saved_file_reaches_the_target_through_watchfiles(tmp_path: Path) -> None:
    """The real loop: a file written under a service's package reloads it; stop ends it."""
    target = FakeTarget()
    loop, events = watcher(tmp_path, target)
    loop.step_ms, loop.debounce_ms = 20, 500
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        async with asyncio.timeout(20):
            while not target.calls:
                # Written until seen: the watcher may not have started when the first lands.
                (tmp_path / "greeter" / "app.py").write_text(f"X = {len(events)}\n")
                await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert set(target.calls) == {"greeter"}


pytestmark = pytest.mark.asyncio


class ManifestTarget(FakeTarget):
    def __init__(self, outcome: ManifestOutcome) -> None:
        super().__init__()
        self.outcome = outcome

    async def apply_manifest(self) -> ManifestOutcome:
        self.calls.append("<manifest>")
        return self.outcome


async def test_a_saved_manifest_is_applied_then_sources_are_read_again(tmp_path: Path) -> None:
    """The manifest first, then code changes of the same batch; sources re-read after."""
    target = ManifestTarget(ManifestOutcome(changed=("greeter: scaled to 3",)))
    loop, events = watcher(tmp_path, target)
    reread: list[bool] = []

    def again() -> SourceMap:
        reread.append(True)
        return loop.sources

    loop.reread = again
    await loop.handle([tmp_path / "corral.yaml", tmp_path / "greeter/app.py"])
    assert target.calls == ["<manifest>", "greeter"]
    assert isinstance(events[0], ManifestChanged)
    assert reread == [True]


async def test_an_invalid_manifest_is_reported_and_sources_kept(tmp_path: Path) -> None:
    """The located errors reach the terminal; the old sources stay in force."""
    target = ManifestTarget(ManifestOutcome(error="corral.yaml:3:5 services.x: unknown key"))
    loop, events = watcher(tmp_path, target)
    loop.reread = lambda: pytest.fail("an invalid manifest must not be read as sources")
    await loop.handle([tmp_path / "corral.yaml"])
    assert isinstance(events[0], ManifestChanged)
    assert events[0].outcome.error is not None
    assert "corral.yaml:3:5" in events[0].outcome.error
