"""Stopping: graceful stop, grace-period SIGKILL, SIGKILLed orchestrator, stale runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from runtime_helpers import descendants, gone, make_plan, service, wait_until

from corral.runtime.events import InstanceStopped, ServiceStopped, StaleRunCleaned

pytestmark = pytest.mark.timeout(40)

DRIVER = str(Path(__file__).parent / "fixtures" / "driver.py")


async def test_down_stops_in_reverse_order_leaving_no_process(system) -> None:
    """down stops dependents before dependencies, SIGTERM first, and no process of any
    instance (grandchildren included) is left in the process table."""
    orch, events = system(
        {
            "db": service(env={"SVC_GRANDCHILD": 1}, stop_grace_period="1s"),
            "api": service(depends_on={"db": "healthy"}),
        }
    )
    await orch.up()
    leaders = [r.pid for r in orch.registry.snapshot().instances]
    grandchildren = await wait_until(lambda: [p for pid in leaders for p in descendants(pid)])
    await orch.down()
    assert [e.service for e in events.of(ServiceStopped)] == ["api", "db"]
    for pid in leaders + grandchildren:
        assert gone(pid), psutil.Process(pid).as_dict(["cmdline", "status"])
    stopped = {e.instance: e for e in events.of(InstanceStopped)}
    assert not stopped["api-1"].killed  # exited on SIGTERM
    assert stopped["db-1"].killed  # its grandchild ignored SIGTERM until the grace period
    await orch.down()  # idempotent


async def test_sigterm_ignoring_service_is_killed_after_grace(system) -> None:
    """A service ignoring SIGTERM gets SIGKILL once its stop grace period is over."""
    orch, events = system({"web": service(env={"SVC_IGNORE_TERM": 1}, stop_grace_period="500ms")})
    await orch.up()
    pid = orch.registry.snapshot().get("web-1").pid
    await orch.stop_service("web")
    assert gone(pid)
    [stopped] = events.of(InstanceStopped)
    assert stopped.killed
    assert stopped.seconds >= 0.5


def start_driver(tmp_path: Path) -> tuple[subprocess.Popen[str], dict]:
    make_plan(
        tmp_path,
        {
            "web": service(replicas=2, env={"SVC_GRANDCHILD": 1}),
            "worker": service(readiness=False),
        },
    )
    driver = subprocess.Popen(
        [sys.executable, DRIVER, str(tmp_path / "corral.yaml")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert driver.stdout is not None
    status = json.loads(driver.stdout.readline())
    return driver, status


async def test_sigkilled_orchestrator_leaves_no_children(tmp_path: Path) -> None:
    """When the orchestrator is killed with SIGKILL, every process it started (instances,
    their grandchildren, the reaper) is gone shortly after."""
    driver, status = start_driver(tmp_path)
    try:
        family = await wait_until(lambda: len(d := descendants(driver.pid)) >= 6 and d)
        run = json.loads((tmp_path / ".corral" / "run.json").read_text())
        assert {i["pid"] for i in run["instances"]} == {i["pid"] for i in status["instances"]}
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        await wait_until(lambda: all(gone(pid) for pid in family), timeout=10)
    finally:
        driver.kill()


async def test_stale_run_is_cleaned_up_on_next_up(tmp_path: Path, system) -> None:
    """If an orchestrator and its reaper both died, the next up kills the leftover
    process groups named in run.json and says so."""
    driver, status = start_driver(tmp_path)
    try:
        family = await wait_until(lambda: len(d := descendants(driver.pid)) >= 6 and d)
        run = json.loads((tmp_path / ".corral" / "run.json").read_text())
        os.kill(run["reaper_pid"], signal.SIGKILL)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        driver.kill()
    # PDEATHSIG took the direct children; their grandchildren live on in their groups.
    survivors = await wait_until(
        lambda: (
            (alive := [p for p in family if not gone(p)])
            and all(not gone(p) for p in alive)
            and all(gone(i["pid"]) for i in status["instances"])
            and alive
        )
    )
    orch, events = system({"web": service(readiness=False)})
    await orch.up()
    [cleaned] = events.of(StaleRunCleaned)
    assert cleaned.pid == run["pid"]
    assert cleaned.groups
    assert {i["pgid"] for i in run["instances"]} >= set(cleaned.groups)
    await wait_until(lambda: all(gone(p) for p in survivors))


async def test_cooperative_grandchild_does_not_wait_out_the_grace_period(system) -> None:
    """When a service and its grandchild both exit on SIGTERM, stop finishes without
    waiting for the grace period or resorting to SIGKILL."""
    orch, events = system(
        {
            "web": service(
                env={"SVC_GRANDCHILD": 1, "SVC_GRANDCHILD_TERM": 1}, stop_grace_period="5s"
            )
        }
    )
    await orch.up()
    leader = orch.registry.snapshot().get("web-1").pid
    grandchildren = await wait_until(lambda: descendants(leader))
    await orch.stop_service("web")
    [stopped] = events.of(InstanceStopped)
    assert not stopped.killed
    assert stopped.seconds < 4
    assert all(gone(p) for p in [leader, *grandchildren])
