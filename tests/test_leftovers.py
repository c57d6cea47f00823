"""The run-wide hooks in tests/leftovers.py stop what an interrupted test run left."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil

import leftovers


def _sleeper(cwd: Path) -> subprocess.Popen[bytes]:
    cwd.mkdir(parents=True)
    return subprocess.Popen(["sleep", "60"], cwd=cwd, start_new_session=True)


def test_processes_of_a_run_whose_owner_died_are_found_and_stopped(tmp_path: Path) -> None:
    root = tmp_path / "pytest-of-someone"
    dead = root / "pytest-1"
    live = root / "pytest-2"
    unmarked = root / "pytest-3"
    orphan = _sleeper(dead / "test_x0" / "system")
    kept = _sleeper(live / "test_y0")
    older = _sleeper(unmarked / "test_z0")
    try:
        me = psutil.Process()
        (dead / leftovers._OWNER).write_text(json.dumps({"pid": me.pid, "create_time": 1.0}))
        (live / leftovers._OWNER).write_text(
            json.dumps({"pid": me.pid, "create_time": me.create_time()})
        )
        found = leftovers._processes_under(root, keep=None)
        assert {d.name: sorted(p.pid for p in ps) for d, ps in found.items()} == {
            "pytest-1": [orphan.pid],
            "pytest-2": [kept.pid],
            "pytest-3": [older.pid],
        }
        assert [d.name for d in found if leftovers._abandoned(d)] == ["pytest-1"]
        leftovers._stop(found[dead])
        assert orphan.wait(timeout=10) != 0
        assert kept.poll() is None
        assert older.poll() is None
    finally:
        for process in (orphan, kept, older):
            process.kill()
            process.wait()


def test_a_deleted_run_folder_counts_as_abandoned(tmp_path: Path) -> None:
    assert leftovers._abandoned(tmp_path / "pytest-9")
    (tmp_path / "pytest-8").mkdir()
    assert not leftovers._abandoned(tmp_path / "pytest-8")
