"""``<state_dir>/run.json``: who runs this system, so a later run can clean up after a
crashed one.

Written atomically (temporary file, then ``os.replace``) whenever a process group comes
or goes; removed by a clean ``down``. Shape::

    {"pid": 123, "create_time": 1718000000.5, "system": "hello", "started_at": ...,
     "reaper_pid": 124,
     "instances": [{"service": "web", "instance": "web-1", "pid": 130, "pgid": 130,
                    "port": 41234, "create_time": 1718000001.2}]}
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

RUN_FILE = "run.json"


@dataclass(frozen=True)
class GroupRecord:
    service: str
    instance: str
    pid: int
    pgid: int
    port: int
    create_time: float | None


def process_create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def alive(pid: object, create_time: object) -> bool:
    """Whether that very process still lives: ``pid`` exists and, when ``create_time``
    was recorded, was created then (a recycled pid belongs to a younger process)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    created = process_create_time(pid)
    if created is None:
        return False
    return not (isinstance(create_time, int | float) and abs(created - create_time) > 1.0)


def owner_alive(data: dict[str, Any]) -> int | None:
    """The pid of the run's orchestrator if that very process still lives."""
    pid = data.get("pid")
    if not isinstance(pid, int) or pid == os.getpid() or not alive(pid, data.get("create_time")):
        return None
    return pid


def kill_leftovers(data: dict[str, Any]) -> tuple[int, ...]:
    """SIGKILL the process groups a dead run left behind; the groups killed."""
    killed: list[int] = []
    for item in data.get("instances", []):
        if not isinstance(item, dict):
            continue
        pgid = item.get("pgid")
        if not isinstance(pgid, int) or pgid <= 1:
            continue
        # While any member lives the kernel keeps the pgid reserved, so an existing group
        # is ours unless its leader was replaced by a younger process of the same pid.
        leader_created = process_create_time(pgid)
        recorded = item.get("create_time")
        if (
            leader_created is not None
            and isinstance(recorded, int | float)
            and abs(leader_created - recorded) > 1.0
        ):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
            killed.append(pgid)
    return tuple(killed)
