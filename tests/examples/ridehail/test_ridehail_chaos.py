"""Three of ridehail's chaos experiments, run for real with `corral chaos run` against
`corral up -d` (every service a process, the embedded NATS, Envoy): the NATS server
restarted mid-flow, rides' database write-locked, and rides' calls to payments failing
on rides' side, each while a small city rides.
Each must hold (exit 0): every ride paid once, nothing stuck, nothing dead-lettered."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ridehail_system import copy_example

import testkit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def corral(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return testkit.corral(*args, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def ridehail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ridehail running in the background from a copy of the example; down afterwards."""
    folder = copy_example(tmp_path_factory.mktemp("chaos")).parent
    up = corral("up", "-d", cwd=folder, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield folder
    finally:
        corral("down", cwd=folder, timeout=90)


def run(folder: Path, experiment: str) -> dict[str, Any]:
    result = corral("chaos", "run", f"chaos/{experiment}.yaml", "--json", cwd=folder)
    assert result.stdout, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == 0, json.dumps(report, indent=1)
    return report


def test_a_nats_restart_mid_flow_loses_nothing(ridehail: Path) -> None:
    """The bus restarts while rides flow; afterwards every probe holds."""
    report = run(ridehail, "nats-restart")
    assert report["verdict"] == "held"
    [parallel] = report["steps"]
    assert "graceful restart" in parallel["detail"]


def test_a_rides_database_outage_is_survived(ridehail: Path) -> None:
    """rides' SQLite write lock held for 6 s while rides flow; afterwards every probe
    holds, and the control plane says it released the lock."""
    report = run(ridehail, "rides-db-outage")
    assert report["verdict"] == "held"
    listed = json.loads(corral("chaos", "list", "--json", cwd=ridehail).stdout)
    [ended] = [e for e in listed["recent"] if e["kind"] == "database"]
    assert (ended["target"], ended["outcome"]) == ("rides", "write lock released")
    titles = [r["title"] for r in listed["runs"]]
    assert titles[:2] == [
        "rides database outage, then recovery",
        "NATS restart mid-flow loses nothing",
    ]


def test_fare_estimates_failing_for_rides_only_degrade_it(ridehail: Path) -> None:
    """A caller-side fault: rides' calls to payments answer 503 in rides' own client while
    rides flow; rides falls back (no estimate), every ride is paid, nothing dead-lettered."""
    report = run(ridehail, "fare-estimate-down")
    assert report["verdict"] == "held"
    [parallel] = report["steps"]
    assert "abort 503 on 100% of the calls from rides" in parallel["detail"]
