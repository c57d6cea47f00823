"""Keeping instances alive: crash restarts with backoff, crash loops, liveness, readiness."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from runtime_helpers import gone, service, wait_until

from corral.runtime.events import InstanceRestarting, LivenessFailed, ReadinessChanged
from corral.runtime.registry import InstanceState

pytestmark = pytest.mark.timeout(30)


async def test_kill_9_restarts_with_jittered_backoff(system) -> None:
    """After kill -9 the slot restarts (new pid, same id and port, restarts+1) after a
    backoff delay within [initial, initial * multiplier^(n-1)]."""
    orch, events = system(
        {"web": service(restart={"backoff": {"initial": "200ms", "max": "2s", "multiplier": 2}})}
    )
    await orch.up()
    first = orch.registry.snapshot().get("web-1")
    for attempt in (1, 2):
        before = orch.registry.snapshot().get("web-1")
        os.kill(before.pid, signal.SIGKILL)
        after = await wait_until(
            lambda b=before: (
                (r := orch.registry.snapshot().get("web-1")).serving and r.pid != b.pid and r
            )
        )
        assert after.port == first.port
        assert after.restarts == attempt
        assert gone(before.pid)
    delays = [e.delay for e in events.of(InstanceRestarting)]
    assert len(delays) == 2
    assert delays[0] == pytest.approx(0.2)
    assert 0.2 <= delays[1] <= 0.4
    assert not any(e.crashloop for e in events.of(InstanceRestarting))


async def test_crash_loop_is_shown_and_not_a_hot_loop(system, tmp_path: Path) -> None:
    """A service crashing right after start becomes CRASHLOOP with a message, and its
    restarts slow to at least half of backoff_max apart."""
    spawns = tmp_path / "spawns.txt"
    orch, events = system(
        {
            "web": service(
                readiness=False,
                env={"SVC_CRASH_AFTER": 0.05, "SVC_SPAWN_LOG": spawns},
                restart={"backoff": {"initial": "20ms", "max": "600ms"}},
            )
        }
    )
    await orch.up()
    record = await wait_until(
        lambda: (r := orch.registry.snapshot().get("web-1")).state is InstanceState.CRASHLOOP and r,
        timeout=10,
    )
    assert "crashed 3 times in a row" in record.message
    start = len(spawns.read_text().splitlines())
    window_began = time.monotonic()
    await wait_until(lambda: time.monotonic() - window_began > 2.0, timeout=5)
    in_window = len(spawns.read_text().splitlines()) - start
    # At >= 0.3 s between crashes, 2 s hold at most ~7 spawns; a hot loop would be 20+.
    assert in_window <= 7
    loop_delays = [e.delay for e in events.of(InstanceRestarting) if e.crashloop]
    assert loop_delays
    assert all(0.3 <= d <= 0.6 for d in loop_delays)


async def test_liveness_failure_replaces_the_instance(system) -> None:
    """An instance failing liveness threshold times is stopped and replaced by a new process."""
    orch, events = system(
        {
            "web": service(
                env={"SVC_LIVENESS_FAIL_AFTER": 0.5},
                liveness={"http": "/healthz", "period": "100ms", "failure_threshold": 2},
                restart={"backoff": {"initial": "50ms", "max": "1s"}},
            )
        }
    )
    await orch.up()
    old = orch.registry.snapshot().get("web-1")
    await wait_until(lambda: events.of(LivenessFailed), timeout=10)
    new = await wait_until(
        lambda: (r := orch.registry.snapshot().get("web-1")).serving and r.pid != old.pid and r,
        timeout=10,
    )
    assert new.restarts >= 1
    assert gone(old.pid)
    assert "liveness" in events.of(LivenessFailed)[0].message


async def test_readiness_failure_takes_out_of_traffic_without_killing(
    system, tmp_path: Path
) -> None:
    """A running instance whose readiness starts failing is marked not ready, keeps its
    process, and is ready again once the check passes."""
    flag = tmp_path / "unready"
    orch, events = system(
        {
            "web": service(
                env={"SVC_UNREADY_FILE": flag},
                readiness={"http": "/readyz", "period": "100ms", "failure_threshold": 2},
            )
        }
    )
    await orch.up()
    pid = orch.registry.snapshot().get("web-1").pid
    flag.touch()
    record = await wait_until(lambda: not (r := orch.registry.snapshot().get("web-1")).ready and r)
    assert record.state is InstanceState.RUNNING
    assert record.pid == pid
    assert not record.serving
    flag.unlink()
    await wait_until(lambda: orch.registry.snapshot().get("web-1").serving)
    assert orch.registry.snapshot().get("web-1").pid == pid
    assert [e.ready for e in events.of(ReadinessChanged)] == [False, True]
