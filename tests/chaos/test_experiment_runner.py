"""The runner's logic against an in-memory system: the verdict's order (before, method,
after with retries, rollbacks), preflight refusing unknown targets before anything is
done, and faults ended whatever happens."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from corral.api import ApiError
from corral.chaos import ChaosExperiment, PreflightError, Runner, Step, parse
from corral.runtime.registry import InstanceRecord, InstanceState
from corral.runtime.status import ServiceStatus, SystemStatus


class FakeSystem:
    """Two services; ``ready`` and error rates scripted per call."""

    def __init__(self, *, error_rates: list[float | None] | None = None) -> None:
        self.ready = {"rides": 2, "matching": 1}
        self.error_rates = list(error_rates or [0.0])
        self.injected: list[Step] = []
        self.stopped: list[str] = []
        self.count = 0

    def status(self) -> SystemStatus:
        services = {
            "rides": ServiceStatus(
                replicas=2, ready=self.ready["rides"], instances=2, component=False
            ),
            "matching": ServiceStatus(
                replicas=1, ready=self.ready["matching"], instances=1, component=False
            ),
        }
        instances = [
            InstanceRecord(
                service=s,
                instance=f"{s}-{n}",
                host="127.0.0.1",
                port=1000 + n,
                state=InstanceState.RUNNING,
            )
            for s, count in (("rides", 2), ("matching", 1))
            for n in range(1, count + 1)
        ]
        return SystemStatus.model_validate(
            {
                "system": "fake",
                "state": "running",
                "pid": 1,
                "manifest": "/x/corral.yaml",
                "state_dir": "/x/.corral",
                "started_at": 0.0,
                "registry_version": 1,
                "services": services,
                "instances": instances,
                "gateway_url": "http://127.0.0.1:1",
            }
        )

    def inject(self, step: Step) -> list[ChaosExperiment]:
        self.injected.append(step)
        self.count += 1
        if step.action == "pause":
            self.ready["matching"] = 0  # out of readiness while paused
        begun = ChaosExperiment(
            id=f"chaos-{self.count}",
            kind="pause" if step.action == "pause" else "kill",
            target=step.target or "",
            state="active",
            detail=f"{step.action} done",
            started_at=0.0,
            expires_at=None,
            remaining=None,
        )
        return [begun]

    def stop(self, experiment_id: str) -> None:
        self.stopped.append(experiment_id)
        self.ready["matching"] = 1

    def summary(self, window: float) -> Mapping[str, Any]:
        rate = self.error_rates.pop(0) if len(self.error_rates) > 1 else self.error_rates[0]
        requests = 0 if rate is None else 100
        return {"gateway": {"requests": requests, "errors": 0, "error_rate": rate}, "services": []}

    def event_bus(self) -> Mapping[str, Any] | None:
        return {"dead_letters": 0}


class Clock:
    """Time that moves only when the runner sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run(text: str, system: FakeSystem, tmp_path: Path) -> Any:
    clock = Clock()
    runner = Runner(
        parse(text, "e.yaml"), system, file=tmp_path / "e.yaml", sleep=clock.sleep, clock=clock
    )
    return runner.run()


HEAD = "title: t\nhypothesis:\n  recover_within: 10s\n  every: 1s\n  probes:\n"


def test_a_fault_the_system_absorbs_holds(tmp_path: Path) -> None:
    """Ready before; the pause takes matching out; ended, it is ready again: held."""
    system = FakeSystem()
    report = run(
        HEAD + "    - {type: ready}\n"
        "method:\n  - {action: pause, target: matching, duration: 5s}\n",
        system,
        tmp_path,
    )
    assert report.verdict == "held", report.reason
    assert [s.action for s in system.injected] == ["pause"]
    assert system.stopped == ["chaos-1"]  # ended as soon as the method was over
    assert report.before.held
    assert report.after.held
    assert report.steps[0].experiments == ["chaos-1"]


def test_not_steady_before_means_no_method(tmp_path: Path) -> None:
    """A system already failing is not experimented on: not held, nothing injected."""
    system = FakeSystem()
    system.ready["rides"] = 1
    report = run(
        HEAD + "    - {type: ready}\nmethod:\n  - {action: kill, target: rides}\n",
        system,
        tmp_path,
    )
    assert report.verdict == "not held"
    assert "not steady before the method: ready: every instance (short: rides 1/2)" in report.reason
    assert system.injected == []


def test_the_after_check_waits_for_recovery_then_fails(tmp_path: Path) -> None:
    """After the method, the hypothesis is retried every second until recover_within:
    an error rate that stays high fails it, with the value seen."""
    system = FakeSystem(error_rates=[0.0, 0.5])
    report = run(
        HEAD + "    - {type: error-rate, target: gateway, max: 0.01}\n"
        "method:\n  - {action: kill, target: rides-1}\n",
        system,
        tmp_path,
    )
    assert report.verdict == "not held"
    assert report.after_attempts == 11  # at 0s, 1s ... 10s
    assert report.after.probes[0].value == 0.5
    assert "not steady 10s after the method" in report.reason


def test_recovery_within_the_time_holds(tmp_path: Path) -> None:
    """Errors right after the fault, then none: held, after a few attempts."""
    system = FakeSystem(error_rates=[0.0, 0.3, 0.2, None])
    report = run(
        HEAD + "    - {type: error-rate, target: gateway, max: 0.01}\n"
        "method:\n  - {action: kill, target: rides}\n",
        system,
        tmp_path,
    )
    assert report.verdict == "held", report.reason
    assert report.after_attempts == 3


def test_unknown_targets_are_refused_before_anything_is_done(tmp_path: Path) -> None:
    """Every unknown service is named, one line each; no fault was begun."""
    system = FakeSystem()
    with pytest.raises(PreflightError) as caught:
        run(
            HEAD + "    - {type: error-rate, target: ridez, max: 0.01}\n"
            "method:\n  - {action: kill, target: rides}\n"
            "  - {action: pause, target: payments, duration: 1s}\n"
            "  - {action: nats, mode: restart}\n",
            system,
            tmp_path,
        )
    assert caught.value.problems == [
        "hypothesis.probes[0]: no service named 'ridez' in fake (matching, rides)",
        "method[1]: no service named 'payments' in fake (matching, rides)",
        "method[2]: fake has no event bus",
    ]
    assert caught.value.exit_code == 2
    assert system.injected == []


def test_a_refused_fault_fails_the_run_and_still_rolls_back(tmp_path: Path) -> None:
    """The control plane refuses the second step: the first one's fault is ended, the
    third step is not played, and the rollbacks run."""
    system = FakeSystem()
    marker = tmp_path / "rolled-back"
    text = (
        HEAD + "    - {type: ready}\nmethod:\n"
        "  - {action: gateway, target: rides, abort: 503, duration: 1s}\n"
        "  - {action: kill, target: rides-1}\n"
        "  - {action: kill, target: matching}\n"
        "rollbacks:\n"
        f'  - {{action: command, run: [{sys.executable}, -c, \'open("{marker}", "w")\']}}\n'
    )
    original = system.inject

    def refuse_second(step: Step) -> list[dict[str, Any]]:
        if step.target == "rides-1":
            raise ApiError(409, "nothing to kill", "rides-1 has no process right now")
        return original(step)

    system.inject = refuse_second  # type: ignore[method-assign]
    report = run(text, system, tmp_path)
    assert report.verdict == "not held"
    assert "kill rides-1: nothing to kill: rides-1 has no process right now" in report.reason
    assert [s.action for s in system.injected] == ["gateway"]
    assert system.stopped == ["chaos-1"]
    assert marker.exists()
    assert report.rollbacks[0].ok


def test_repeats_and_parallel_steps(tmp_path: Path) -> None:
    """A kill repeated three times and two faults in parallel: every one begun, each
    fault ended after the method."""
    system = FakeSystem()
    report = run(
        HEAD + "    - {type: ready}\nmethod:\n"
        "  - {action: kill, target: rides, repeat: 3, every: 1s}\n"
        "  - action: parallel\n    steps:\n"
        "      - {action: pause, target: matching, duration: 2s}\n"
        "      - {action: gateway, target: rides, delay: 100ms, duration: 2s}\n",
        system,
        tmp_path,
    )
    assert report.verdict == "held", report.reason
    assert [s.action for s in system.injected].count("kill") == 3
    assert sorted(system.stopped) == [f"chaos-{n}" for n in range(1, 6)]


def test_a_failing_command_probe_shows_its_output(tmp_path: Path) -> None:
    """A command probe (an invariant check) that exits 1: not held, its last lines in
    the report."""
    system = FakeSystem()
    code = "import sys; print('2 drivers on two rides'); sys.exit(1)"
    report = run(
        HEAD + f'    - {{type: command, run: [{sys.executable}, -c, "{code}"]}}\n'
        "method:\n  - {action: wait, duration: 1s}\n",
        system,
        tmp_path,
    )
    assert report.verdict == "not held"
    assert report.before.probes[0].detail == "exit 1: 2 drivers on two rides"


def test_a_calls_fault_naming_an_unknown_service_is_refused_before_anything(
    tmp_path: Path,
) -> None:
    """A caller-side fault whose caller the system lacks: preflight says so in one line,
    and the kill before it is not played (nothing half-applied)."""
    system = FakeSystem()
    with pytest.raises(PreflightError) as caught:
        run(
            HEAD + "    - {type: ready}\nmethod:\n  - {action: kill, target: rides}\n"
            "  - {action: calls, caller: ridez, target: matching, abort: 503, duration: 1s}\n",
            system,
            tmp_path,
        )
    assert caught.value.problems == [
        "method[1]: no service named 'ridez' in fake (matching, rides)"
    ]
    assert system.injected == []


def test_a_calls_fault_is_asked_of_the_target_and_ended(tmp_path: Path) -> None:
    """A caller-side fault step is passed to the target whole (caller, target, abort,
    percent, duration) and ended after the method."""
    system = FakeSystem()
    report = run(
        HEAD + "    - {type: ready}\nmethod:\n"
        "  - {action: calls, caller: rides, target: matching, abort: 503, percent: 50,"
        " duration: 1s}\n",
        system,
        tmp_path,
    )
    assert report.verdict == "held", report.reason
    [step] = system.injected
    assert (step.action, step.caller, step.target, step.abort, step.percent) == (
        "calls",
        "rides",
        "matching",
        503,
        50,
    )
    assert system.stopped == ["chaos-1"]


def test_a_hypothesis_broken_during_the_method_is_not_held(tmp_path: Path) -> None:
    """during: true: the hypothesis is checked while the method runs (here, a real
    half-second command); one failed check makes the run not held even though the
    system is steady again after it."""
    system = FakeSystem(error_rates=[0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0])
    runner = Runner(
        parse(
            "title: t\nhypothesis:\n  during: true\n  every: 100ms\n  probes:\n"
            "    - {type: error-rate, target: gateway, max: 0.01}\n"
            f"method:\n  - {{action: command, run: [{sys.executable}, -c, "
            "'import time; time.sleep(0.6)']}\n",
            "e.yaml",
        ),
        system,
        file=tmp_path / "e.yaml",
    )
    report = runner.run()
    assert report.during, "no check ran during the method"
    assert report.during_failed >= 1
    assert report.during_checks >= report.during_failed
    assert report.after is not None
    assert report.after.held
    assert report.verdict == "not held"
    assert report.reason.startswith("broke during the method: error rate of gateway <= 0.01")
