"""The per-user index of running systems (what `corral ls` reads)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from runtime_helpers import make_plan, service

from corral.runtime import _runstate
from corral.runtime.orchestrator import Orchestrator
from corral.runtime.systems import RunningSystem, SystemsIndex, systems_dir

pytestmark = pytest.mark.timeout(30)


def entry(
    state_dir: Path, pid: int, create_time: float | None, name: str = "demo"
) -> RunningSystem:
    return RunningSystem(
        system=name,
        manifest=str(state_dir.parent / "corral.yaml"),
        state_dir=str(state_dir),
        pid=pid,
        create_time=create_time,
    )


def test_folder_follows_xdg(tmp_path: Path) -> None:
    """$XDG_RUNTIME_DIR first, then $XDG_STATE_HOME, then ~/.local/state."""
    assert systems_dir({"XDG_RUNTIME_DIR": "/run/user/7"}) == Path("/run/user/7/corral/systems")
    assert systems_dir({"XDG_STATE_HOME": "/s"}) == Path("/s/corral/systems")
    assert systems_dir({}) == Path.home() / ".local" / "state" / "corral" / "systems"


def test_a_live_system_is_listed_and_a_dead_one_is_cleaned(tmp_path: Path) -> None:
    """An entry whose process lives is listed; one whose process is gone (or whose pid
    now belongs to a younger process) is deleted when read."""
    index = SystemsIndex(tmp_path / "systems")
    me = os.getpid()
    index.register(entry(tmp_path / "a" / ".corral", me, _runstate.process_create_time(me), "a"))
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    index.register(entry(tmp_path / "b" / ".corral", int(finished.stdout), None, "b"))
    index.register(entry(tmp_path / "c" / ".corral", me, 1.0, "c"))  # a recycled pid
    assert [e.system for e in index.running()] == ["a"]
    assert len(list((tmp_path / "systems").glob("*.json"))) == 1


def test_unregister_removes_only_its_own_entry(tmp_path: Path) -> None:
    """A stopping run does not remove the entry a newer run of the folder wrote."""
    index = SystemsIndex(tmp_path / "systems")
    me = os.getpid()
    index.register(entry(tmp_path / ".corral", me, None))
    index.unregister(tmp_path / ".corral", pid=me + 1)
    assert [e.pid for e in index.running()] == [me]
    index.unregister(tmp_path / ".corral", pid=me)
    assert index.running() == []


async def test_an_orchestrator_is_listed_while_it_runs(tmp_path: Path) -> None:
    """up() records the system (name, manifest, state folder); down() forgets it."""
    index = SystemsIndex(tmp_path / "systems")
    manifest, plan = make_plan(tmp_path, {"web": service()}, name="shop")
    orch = Orchestrator(plan, manifest_path=manifest.path, systems=index, start_timeout=20.0)
    try:
        await orch.up()
        [listed] = index.running()
        assert (listed.system, listed.manifest) == ("shop", str(manifest.path))
        assert listed.state_dir == str(plan.state_dir)
        assert listed.started_at == orch.started_at
    finally:
        await orch.down()
    assert index.running() == []
