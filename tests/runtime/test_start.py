"""Starting a system: dependency order, readiness gating, start failures."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
from runtime_helpers import SVC, gone, service, wait_until

from corral.runtime._process import process_alive
from corral.runtime.databases import POSTGRES_URL_VARIABLE
from corral.runtime.errors import AlreadyRunningError, StartError, UnknownServiceError
from corral.runtime.events import InstanceReady, InstanceStarted, ServiceReady, SystemReady
from corral.runtime.orchestrator import CONTROL_PLANE_SECRETS
from corral.runtime.registry import InstanceState

pytestmark = pytest.mark.timeout(30)


def first_time(recorder, kind, instance):
    return next(t for t, e in recorder.events if isinstance(e, kind) and e.instance == instance)


async def test_up_runs_every_replica_with_contract_environment(system) -> None:
    """up returns with every replica serving, each with its own port, id and contract env."""
    orch, events = system(
        {"web": service(replicas=2, env={"SVC_PRINT_ENV": "PORT,CORRAL_INSTANCE"})}
    )
    await orch.up()
    records = orch.registry.snapshot().instances
    assert [r.instance for r in records] == ["web-1", "web-2"]
    assert all(r.serving and r.pid for r in records)
    assert len({r.port for r in records}) == 2
    lines = {line.line for line in orch.logs.read(["web"])}
    for r in records:
        assert f"PORT={r.port}" in lines
        assert f"CORRAL_INSTANCE={r.instance}" in lines
    assert events.of(SystemReady)
    status = orch.status().model_dump(mode="json")
    assert status["services"]["web"]["replicas"] == 2
    assert {i["instance"] for i in status["instances"]} == {"web-1", "web-2"}
    assert {"pid", "port", "state", "ready", "restarts", "uptime"} <= set(status["instances"][0])


async def test_healthy_dependency_waits_for_readiness(system) -> None:
    """A dependent with condition healthy is spawned only after its dependency is ready."""
    orch, events = system(
        {
            "db": service(env={"SVC_READY_AFTER": 0.6}),
            "api": service(depends_on={"db": "healthy"}),
        }
    )
    await orch.up()
    assert first_time(events, InstanceStarted, "api-1") >= first_time(events, InstanceReady, "db-1")


async def test_started_dependency_does_not_wait_for_readiness(system) -> None:
    """A dependent with condition started is spawned while its dependency is still starting."""
    orch, events = system(
        {"db": service(env={"SVC_READY_AFTER": 1.0}), "api": service(depends_on=["db"])}
    )
    await orch.up()
    assert first_time(events, InstanceStarted, "api-1") < first_time(events, InstanceReady, "db-1")
    assert [e.service for e in events.of(ServiceReady)] == ["api", "db"]


async def test_instance_is_ready_only_after_readiness_passes(system) -> None:
    """While readiness fails the instance is STARTING and not ready; up waits for it."""
    orch, events = system({"web": service(env={"SVC_READY_AFTER": 0.8})})
    up = asyncio.create_task(orch.up())
    record = await wait_until(lambda: (r := orch.registry.snapshot().get("web-1")) and r.pid and r)
    assert record.state is InstanceState.STARTING
    assert not record.ready
    assert not up.done()
    await up
    assert orch.registry.snapshot().get("web-1").serving
    assert events.of(InstanceReady)[0].seconds >= 0.8


async def test_missing_program_fails_start_and_leaves_nothing(system, tmp_path) -> None:
    """A service that cannot be spawned raises StartError and up stops what it started."""
    bad = {"command": [str(tmp_path / "no-such-program")], "database": "none"}
    orch, events = system({"good": service(), "bad": bad})
    with pytest.raises(StartError) as caught:
        await orch.up()
    assert caught.value.service == "bad"
    assert caught.value.instance == "bad-1"
    assert "no-such-program" in str(caught.value)
    good_pids = [e.pid for e in events.of(InstanceStarted) if e.instance == "good-1"]
    assert all(gone(pid) for pid in good_pids)
    assert orch.state == "stopped"
    assert not orch.run_file.exists()


async def test_crash_before_ready_reports_reason_and_log_tail(system) -> None:
    """A service that exits at start (restart never) fails up with its last log lines."""
    orch, _ = system(
        {"web": service(restart="never", env={"SVC_CRASH_AFTER": 0, "SVC_EXIT_CODE": 3})}
    )
    with pytest.raises(StartError) as caught:
        await orch.up()
    assert "exited with code 3" in caught.value.reason
    assert any("crashing with 3" in line for line in caught.value.log_tail)
    assert "crashing with 3" in caught.value.details()


async def test_crash_loop_at_start_fails_up(system) -> None:
    """A service crashing at every start fails up (as a crash loop) instead of waiting forever."""
    orch, _ = system(
        {
            "web": service(
                env={"SVC_CRASH_AFTER": 0},
                restart={"backoff": {"initial": "50ms", "max": "200ms"}},
            )
        }
    )
    with pytest.raises(StartError, match="crash loop"):
        await orch.up()


async def test_postgres_without_server_is_a_clear_start_error(system, monkeypatch) -> None:
    """A postgres service with no admin URL anywhere fails with a hint naming both places."""
    monkeypatch.delenv("CORRAL_POSTGRES_URL", raising=False)
    orch, _ = system({"web": service(database="postgres")})
    with pytest.raises(StartError, match="CORRAL_POSTGRES_URL") as caught:
        await orch.up()
    assert caught.value.service == "web"


async def test_sqlite_database_url_is_created(system) -> None:
    """A sqlite service gets DATABASE_URL pointing into <state_dir>/data, whose folder exists."""
    orch, _ = system({"web": service(database="sqlite", env={"SVC_PRINT_ENV": "DATABASE_URL"})})
    await orch.up()
    url = next(x.line for x in orch.logs.read() if x.line.startswith("DATABASE_URL="))
    assert "sqlite" in url
    assert str(orch.state_dir / "data") in url
    assert (orch.state_dir / "data").is_dir()


async def test_unknown_service_is_a_named_error(system) -> None:
    """Operations on a service the plan lacks raise UnknownServiceError listing known ones."""
    orch, _ = system({"web": service(readiness=False)})
    await orch.up()
    with pytest.raises(UnknownServiceError, match="known: web"):
        await orch.scale("nope", 2)
    assert os.getpid() == orch.status().pid


async def test_cancelled_up_stops_what_it_started(system) -> None:
    """Cancelling up (Ctrl-C) mid-start stops every process it had started."""
    orch, events = system({"web": service(replicas=2, env={"SVC_READY_AFTER": 30})})
    up = asyncio.create_task(orch.up())
    await wait_until(lambda: len(events.of(InstanceStarted)) == 2)
    up.cancel()
    with pytest.raises(asyncio.CancelledError):
        await up
    assert orch.state == "stopped"
    assert all(gone(e.pid) for e in events.of(InstanceStarted))


async def test_second_orchestrator_on_a_live_run_is_refused(system, tmp_path) -> None:
    """up refuses to start when run.json names a live orchestrator of this system."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        orch, _ = system({"web": service()})
        orch.state_dir.mkdir(parents=True, exist_ok=True)
        created = psutil.Process(other.pid).create_time()
        orch.run_file.write_text(json.dumps({"pid": other.pid, "create_time": created}))
        with pytest.raises(AlreadyRunningError, match=str(other.pid)):
            await orch.up()
        assert orch.run_file.exists()  # the live run's state is left alone
    finally:
        other.kill()
        other.wait()


async def test_postgres_admin_url_never_reaches_instances(system, monkeypatch) -> None:
    """CORRAL_POSTGRES_URL in the orchestrator's environment is not passed to instances."""
    monkeypatch.setenv("CORRAL_POSTGRES_URL", "postgresql://admin:secret@127.0.0.1:1/postgres")
    orch, _ = system({"web": service(env={"SVC_PRINT_ENV": "CORRAL_POSTGRES_URL,CORRAL_INSTANCE"})})
    await orch.up()
    await wait_until(lambda: "CORRAL_INSTANCE=web-1" in {x.line for x in orch.logs.read()})
    assert "CORRAL_POSTGRES_URL=None" in {x.line for x in orch.logs.read()}
    assert POSTGRES_URL_VARIABLE in CONTROL_PLANE_SECRETS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_fixed_port_taken_by_another_program_fails_start(system) -> None:
    """A fixed port already served by a foreign program is a StartError, not a false ready."""
    port = _free_port()
    foreign = subprocess.Popen(
        [sys.executable, SVC], env={**os.environ, "PORT": str(port), "CORRAL_INSTANCE": "foreign"}
    )
    try:
        await wait_until(lambda: _accepts(port))
        orch, _ = system({"web": service(port=port)})
        with pytest.raises(StartError, match=f"port {port} is already in use") as caught:
            await orch.up()
        assert caught.value.instance == "web-1"
        assert foreign.poll() is None
    finally:
        foreign.kill()
        foreign.wait()


async def test_readiness_guard_sees_a_dead_process_asyncio_has_not_reaped() -> None:
    """process_alive, which a passing readiness probe must also satisfy, is False for a
    killed instance process even before asyncio has reaped it."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(30)")
    try:
        assert process_alive(proc)
        os.kill(proc.pid, signal.SIGKILL)
        # Polled without yielding to the event loop, so asyncio cannot reap it meanwhile.
        deadline = time.monotonic() + 5.0
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "never became a zombie"
            time.sleep(0.005)
        assert proc.returncode is None
        assert not process_alive(proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    assert not process_alive(proc)


async def test_reconfigured_plan_is_used_by_every_later_spawn(system) -> None:
    """After reconfigure(), a crash restart in place and a scale-up both start with the
    new environment; the instance that did not restart keeps the one it has."""
    orch, _ = system({"web": service(env={"SVC_PRINT_ENV": "LEVEL", "LEVEL": "info"})})
    await orch.up()
    plan = orch.service_plan("web")
    orch.reconfigure(dataclasses.replace(plan, env={**plan.env, "LEVEL": "debug"}))
    first = orch.registry.snapshot().get("web-1")
    assert first is not None
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    await wait_until(
        lambda: (r := orch.registry.snapshot().get("web-1")) and r.serving and r.pid != first.pid
    )
    await orch.scale("web", 2)
    lines = [(line.instance, line.line) for line in orch.logs.read(["web"])]
    assert [line for line in lines if line[1].startswith("LEVEL=")] == [
        ("web-1", "LEVEL=info"),
        ("web-1", "LEVEL=debug"),
        ("web-2", "LEVEL=debug"),
    ]


async def test_a_start_past_its_deadline_names_every_service_not_ready(system) -> None:
    """``start_timeout`` bounds how long instances may take to become ready; the error
    names the late instance with its readiness message and every service not ready."""
    orch, _ = system(
        {
            "slow": service(env={"SVC_READY_AFTER": 60}),
            "later": service(env={"SVC_READY_AFTER": 60}),
            "quick": service(),
        },
        start_timeout=1.0,
    )
    with pytest.raises(StartError) as caught:
        await orch.up()
    reason = caught.value.reason
    assert reason.startswith("not ready after 1s (")
    assert f"{caught.value.instance}: not ready: " in reason, "the late instance and why"
    late = set(reason.rsplit("services not ready: ", 1)[1].split(", "))
    # `quick` too on a machine too loaded for it to answer within the second.
    assert {"later", "slow"} <= late <= {"later", "slow", "quick"}
