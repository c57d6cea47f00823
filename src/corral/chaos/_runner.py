"""Run an experiment against a running system: check, act, check again, roll back.

The runner decides nothing about *how* a fault is made: it asks a :class:`Target` (the
control-plane API for ``corral chaos run``; an in-memory fake in tests), and every fault
it asks for carries its own duration, enforced by the control plane's timers. So a run
whose terminal is closed mid-method leaves nothing behind: its faults expire on time
and the control plane cleans up after them (docs/chaos.md, "Guarantees").

Order: targets are checked first (an unknown target changes nothing), then the
hypothesis *before* (not steady: the method is not played), the method (the hypothesis
*during* it, when asked), the faults still active are ended, the hypothesis *after*
(retried until it holds or ``recover_within`` passes), and the rollbacks, always.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import httpx

from corral.chaos import _probes
from corral.chaos._experiments import ChaosExperiment
from corral.chaos._model import Experiment, Probe, Step
from corral.chaos._report import Check, Phase, ProbeResult, Report, StepResult
from corral.errors import CorralError
from corral.runtime.status import SystemStatus

KEEP_DURING = 200
"""Held checks kept in a report (failed ones are all kept)."""
OUTPUT_LIMIT = 64 * 1024
"""Bytes of a command's output kept (for its last lines in the report)."""


class Target(Protocol):
    """What the runner needs of a running system."""

    def status(self) -> SystemStatus: ...

    def inject(self, step: Step) -> list[ChaosExperiment]:
        """Begin the fault ``step`` names, for its duration; the experiments begun."""
        ...

    def stop(self, experiment_id: str) -> None:
        """End a fault now (one already ended is not an error)."""
        ...

    def summary(self, window: float) -> Mapping[str, Any]: ...

    def event_bus(self) -> Mapping[str, Any] | None: ...


class PreflightError(CorralError):
    """The experiment names what this system does not have: nothing was done."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def preflight(experiment: Experiment, status: SystemStatus) -> list[str]:
    """Every target the experiment names that the running system lacks, one line each."""
    services = {n for n, s in status.services.items() if not s.component}
    instances = {i.instance for i in status.instances if not i.component}
    problems = []

    def service(where: str, name: str | None, *, gateway: bool = False) -> None:
        if name is None or name in services or (gateway and name == _probes.GATEWAY):
            return
        known = ", ".join(sorted(services))
        problems.append(f"{where}: no service named {name!r} in {status.system} ({known})")

    for index, probe in enumerate(experiment.hypothesis.probes):
        where = f"hypothesis.probes[{index}]"
        if probe.type in ("error-rate", "latency"):
            service(where, probe.target, gateway=True)
            if probe.target == _probes.GATEWAY and status.gateway_url is None:
                problems.append(f"{where}: {status.system} has no gateway")
        for name in probe.services or ():
            service(where, name)
        if probe.type == "dead-letters" and status.nats_url is None:
            problems.append(f"{where}: {status.system} has no event bus")
        relative = probe.type == "http" and (probe.url or "").startswith("/")
        if relative and status.gateway_url is None:
            problems.append(f"{where}: a path needs a gateway; give a full URL")

    def step_problems(where: str, step: Step) -> None:
        instance = step.action in ("kill", "pause", "cpu") and step.target in instances
        if step.action in ("kill", "pause", "cpu", "gateway", "database") and not instance:
            service(where, step.target)
        elif step.action == "calls":
            # a caller that does not declare the target is refused when the fault begins
            service(where, step.caller)
            service(where, step.target)
        elif step.action == "nats":
            if status.nats_url is None:
                problems.append(f"{where}: {status.system} has no event bus")
            elif not status.nats_embedded:
                problems.append(
                    f"{where}: NATS at {status.nats_url} is not Corral's own; it is no target"
                )
        if step.action == "gateway" and status.gateway_url is None:
            problems.append(f"{where}: {status.system} has no gateway")
        for inner, nested in enumerate(step.steps or ()):
            step_problems(f"{where}.steps[{inner}]", nested)

    for index, step in enumerate(experiment.method):
        step_problems(f"method[{index}]", step)
    return problems


class Runner:
    """One run of one experiment. ``sleep`` and ``clock`` are passed in so the logic's
    tests need not wait."""

    def __init__(
        self,
        experiment: Experiment,
        target: Target,
        *,
        file: Path,
        run_id: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        on_progress: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.experiment = experiment
        self.target = target
        self.file = file
        self._sleep = sleep
        self._clock = clock
        self._say = on_progress
        self._lock = threading.Lock()  # one call to the target at a time
        self._done = threading.Event()
        self._begun: list[str] = []
        self._background: list[subprocess.Popen[bytes]] = []
        self._env: dict[str, str] = {}
        self.report = Report(
            id=run_id or f"run-{int(self._clock() * 1000)}",
            title=experiment.title,
            file=str(file),
            started_at=self._clock(),
            verdict="not held",
            reason="did not finish",
        )

    # --- the run ---------------------------------------------------------------------

    def run(self) -> Report:
        """Play the experiment; raises :class:`PreflightError` (nothing done) when it
        names what the system lacks."""
        status = self._call(self.target.status)
        problems = preflight(self.experiment, status)
        if problems:
            raise PreflightError(problems)
        self.report.system = status.system
        self._env = _environment(status)
        self._gateway = status.gateway_url
        try:
            self._play()
        finally:
            self._end_faults()
            self._rollback()
            self.report.ended_at = self._clock()
        return self.report

    def _play(self) -> None:
        hypothesis = self.experiment.hypothesis
        before = self._check("before")
        self.report.before = before
        if not before.held:
            self._verdict(False, f"not steady before the method: {_failed(before)}")
            return
        self._say("steady before the method; playing it")
        watcher = None
        if hypothesis.during:
            watcher = threading.Thread(target=self._watch, name="chaos-during", daemon=True)
            watcher.start()
        try:
            failed = self._steps(self.experiment.method, self.report.steps)
        finally:
            self._done.set()
            if watcher is not None:
                watcher.join()
            self._end_background()
        self._end_faults()
        if failed is not None:
            self._verdict(False, f"the method could not be played: {failed}")
            return
        after = self._recover(hypothesis.recover_within, hypothesis.every)
        during_failed = next((c for c in self.report.during if not c.held), None)
        if not after.held:
            self._verdict(
                False,
                f"not steady {hypothesis.recover_within:g}s after the method: {_failed(after)}",
            )
        elif during_failed is not None:
            self._verdict(False, f"broke during the method: {_failed(during_failed)}")
        else:
            took = after.at - (self.report.steps[-1].ended_at or after.at)
            self._verdict(
                True,
                f"steady before, after (in {max(0.0, took):.1f}s)"
                + (" and during the method" if hypothesis.during else ""),
            )

    def _verdict(self, held: bool, reason: str) -> None:
        self.report.verdict = "held" if held else "not held"
        self.report.reason = reason

    # --- the hypothesis --------------------------------------------------------------

    def _check(self, phase: Phase) -> Check:
        results = [self._probe(p) for p in self.experiment.hypothesis.probes]
        return Check(
            phase=phase, at=self._clock(), held=all(r.held for r in results), probes=results
        )

    def _recover(self, within: float, every: float) -> Check:
        deadline = self._clock() + within
        while True:
            self.report.after_attempts += 1
            check = self._check("after")
            self.report.after = check
            if check.held or self._clock() >= deadline:
                return check
            self._sleep(min(every, max(0.0, deadline - self._clock())))

    def _watch(self) -> None:
        every = self.experiment.hypothesis.every
        while not self._done.wait(every):
            check = self._check("during")
            self.report.during_checks += 1
            self.report.during_failed += not check.held
            if not check.held or len(self.report.during) < KEEP_DURING:
                self.report.during.append(check)  # bounded: a long method checks often
            if not check.held:
                self._say(f"not steady during the method: {_failed(check)}")

    def _probe(self, probe: Probe) -> ProbeResult:
        now = self._clock()
        try:
            match probe.type:
                case "ready":
                    return _probes.ready(probe, self._call(self.target.status), now)
                case "error-rate":
                    summary = self._call(lambda: self.target.summary(probe.window))
                    return _probes.error_rate(probe, summary, now)
                case "latency":
                    summary = self._call(lambda: self.target.summary(probe.window))
                    return _probes.latency(probe, summary, now)
                case "dead-letters":
                    return _probes.dead_letters(probe, self._call(self.target.event_bus), now)
                case "http":
                    return self._http(probe, now)
                case _:
                    code, output = self._command(probe.run or [], probe.timeout, probe.cwd)
                    return _probes.command(probe, code, output, now)
        except CorralError as exc:  # the control plane refused or is gone: not steady
            return ProbeResult(
                probe=probe.label, type=probe.type, held=False, detail=exc.message, at=now
            )

    def _http(self, probe: Probe, now: float) -> ProbeResult:
        url = probe.url or ""
        if url.startswith("/"):
            url = f"{(self._gateway or '').rstrip('/')}{url}"
        try:
            response = httpx.get(url, headers=probe.headers, timeout=probe.timeout)
        except httpx.HTTPError as exc:
            return _probes.http(probe, None, "", f"{type(exc).__name__}: {exc}", now)
        return _probes.http(probe, response.status_code, response.text[:OUTPUT_LIMIT], None, now)

    def _argv(self, argv: list[str], cwd: str | None) -> tuple[list[str], Path]:
        """``python`` is the interpreter corral runs on (its environment has the
        experiment's packages); ``cwd`` is relative to the experiment's folder."""
        if argv and argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        return argv, (self.file.parent / cwd if cwd else self.file.parent)

    def _command(
        self, argv: list[str], timeout: float, cwd: str | None = None
    ) -> tuple[int | None, str]:
        argv, folder = self._argv(argv, cwd)
        try:
            done = subprocess.run(  # the experiment's author's own command
                argv,
                cwd=folder,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout:g}s"
        except OSError as exc:
            return None, f"cannot run {argv[0]!r}: {exc.strerror}"
        return done.returncode, done.stdout[-OUTPUT_LIMIT:].decode("utf-8", "replace")

    # --- the method ------------------------------------------------------------------

    def _steps(self, steps: list[Step], into: list[StepResult]) -> str | None:
        """Play steps in order; the first failure's description (the rest are skipped)."""
        for step in steps:
            result = self._step(step)
            into.append(result)
            if not result.ok:
                return f"{result.step}: {result.detail}"
        return None

    def _step(self, step: Step) -> StepResult:
        result = StepResult(step=step.label, action=step.action, started_at=self._clock())
        self._say(f"step: {step.label}")
        if step.start_after:
            self._sleep(step.start_after)
        try:
            if step.action == "parallel":
                inner = step.steps or []
                with ThreadPoolExecutor(len(inner), thread_name_prefix="chaos-step") as pool:
                    results = list(pool.map(self._step, inner))
                result.ok = all(r.ok for r in results)
                result.detail = "; ".join(f"{r.step}: {r.detail}" for r in results)
                result.experiments = [e for r in results for e in r.experiments]
            elif step.action == "wait":
                self._sleep(step.duration or 0.0)
            elif step.action == "command":
                self._run_command(step, result)
            else:
                self._fault(step, result)
        except CorralError as exc:
            result.ok = False
            result.detail = exc.message
        result.ended_at = self._clock()
        return result

    def _fault(self, step: Step, result: StepResult) -> None:
        details = []
        for occurrence in range(step.repeat):
            if occurrence:
                self._sleep(step.every)
            begun = self._call(lambda: self.target.inject(step))
            ids = [e.id for e in begun]
            with self._lock:
                self._begun += ids
            result.experiments += ids
            details += [e.detail for e in begun]
            if step.duration:
                self._sleep(step.duration)
        result.detail = "; ".join(dict.fromkeys(d for d in details if d))

    def _run_command(self, step: Step, result: StepResult) -> None:
        if step.background:
            argv, folder = self._argv(step.run or [], step.cwd)
            process = subprocess.Popen(  # the experiment's author's own command
                argv,
                cwd=folder,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._background.append(process)
            result.detail = f"started, pid {process.pid} (stopped when the method ends)"
            return
        code, output = self._command(step.run or [], step.timeout, step.cwd)
        result.ok = code == 0
        tail = " | ".join(output.strip().splitlines()[-3:])
        result.detail = f"exit {code}" + (f": {tail}" if tail and not result.ok else "")

    # --- cleaning up -----------------------------------------------------------------

    def _end_background(self) -> None:
        for process in self._background:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._background.clear()

    def _end_faults(self) -> None:
        """End what this run began and is still active (the control plane would on
        expiry anyway; this is sooner). Never raises."""
        with self._lock:
            begun, self._begun = self._begun, []
        for experiment_id in begun:
            with contextlib.suppress(CorralError):
                self._call(partial(self.target.stop, experiment_id))

    def _rollback(self) -> None:
        for step in self.experiment.rollbacks:
            self.report.rollbacks.append(self._step(step))

    def _call[T](self, do: Callable[[], T]) -> T:
        with self._lock:
            return do()


def _failed(check: Check) -> str:
    return "; ".join(f"{r.probe} ({r.detail})" for r in check.probes if not r.held)


def _environment(status: SystemStatus) -> dict[str, str]:
    """A command's environment: ours, plus where the system answers."""
    env = dict(os.environ)
    env["CORRAL_MANIFEST"] = status.manifest
    if status.gateway_url:
        env["CORRAL_GATEWAY_URL"] = status.gateway_url
    if status.api_url:
        env["CORRAL_API_URL"] = status.api_url
    return env
