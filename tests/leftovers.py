"""No system a test started outlives the test run that started it.

Tests start real systems (``corral up -d`` daemons, their services, Envoy, nats-server)
in folders under pytest's temporary root. A test that fails still stops its system in
its own teardown, but a pytest that is itself killed (a timeout, Ctrl-C twice, a lost
CI runner) runs no teardown: its daemons are detached on purpose and kept running,
using CPU for hours and slowing every later run on the machine.

So the run's controller marks its temporary folder with its own pid, and at the start
of a run stops every process whose working directory is inside an earlier run's folder
whose owner is no longer alive; at the end it stops whatever of its own is left (and
says so, since that is a test leaking a system). Runs going on in parallel (other
checkouts on the same machine) are left alone: their owner still lives.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import psutil
import pytest

_OWNER = ".corral-pytest-owner"
_GRACE = 10.0
"""Seconds an orchestrator gets to stop its system after SIGTERM, before SIGKILL."""


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")  # xdist workers have it


def _run_dir(config: pytest.Config) -> Path:
    """This run's own folder (``.../pytest-of-USER/pytest-N``), also under xdist."""
    return config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined,no-any-return]


def _abandoned(run_dir: Path) -> bool:
    """A run folder whose owner is known to be gone: its mark names a dead process, or
    the folder itself was deleted (pytest keeps only the last few). A folder without a
    mark belongs to a run of an older checkout, which may still be going on: kept."""
    if not run_dir.exists():
        return True
    return (run_dir / _OWNER).exists() and not _owner_alive(run_dir)


def _owner_alive(run_dir: Path) -> bool:
    try:
        owner = json.loads((run_dir / _OWNER).read_text())
        process = psutil.Process(int(owner["pid"]))
        return abs(process.create_time() - float(owner["create_time"])) < 1.0
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return False


def _processes_under(root: Path, *, keep: Path | None) -> dict[Path, list[psutil.Process]]:
    """Processes working inside ``root``'s run folders, by run folder (``keep`` skipped)."""
    found: dict[Path, list[psutil.Process]] = {}
    me = os.getpid()
    for process in psutil.process_iter(["pid", "name", "cwd"]):
        cwd = process.info.get("cwd")
        if not cwd or process.pid == me:
            continue
        try:  # a deleted folder reads as "PATH (deleted)": its first parts still place it
            relative = Path(cwd).relative_to(root)
        except ValueError:
            continue
        if not relative.parts:
            continue
        run_dir = root / relative.parts[0]
        if run_dir != keep:
            found.setdefault(run_dir, []).append(process)
    return found


def _stop(processes: list[psutil.Process]) -> None:
    """Orchestrators first (SIGTERM: they stop their own system), then anything left."""
    orchestrators = [p for p in processes if _is_orchestrator(p)]
    for process in orchestrators:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    psutil.wait_procs(orchestrators, timeout=_GRACE)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                process.kill()


def _is_orchestrator(process: psutil.Process) -> bool:
    try:
        argv = process.cmdline()
    except psutil.Error:
        return False
    return "corral" in argv and "up" in argv


def stop_abandoned(session: pytest.Session) -> None:
    """At the start of a run: mark this run's folder, stop what dead runs left."""
    config = session.config
    if not _is_controller(config):
        return
    run_dir = _run_dir(config)
    me = psutil.Process()
    (run_dir / _OWNER).write_text(json.dumps({"pid": me.pid, "create_time": me.create_time()}))
    orphans = _processes_under(run_dir.parent, keep=run_dir)
    left = [p for d, ps in orphans.items() if _abandoned(d) for p in ps]
    if left:
        started = time.monotonic()
        _stop(left)
        print(
            f"\nstopped {len(left)} process(es) left by an earlier, interrupted test run "
            f"({time.monotonic() - started:.1f} s)"
        )


def stop_own(session: pytest.Session) -> None:
    """At the end of a run: stop whatever of this run's is still running."""
    config = session.config
    if not _is_controller(config):
        return
    run_dir = _run_dir(config)
    mine = _processes_under(run_dir.parent, keep=None).get(run_dir, [])
    if mine:
        names = sorted({p.info.get("name") or str(p.pid) for p in mine})
        print(f"\nstopping {len(mine)} process(es) the tests left running: {', '.join(names)}")
        _stop(mine)
