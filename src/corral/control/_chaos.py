"""Failure injection into the running system (``corral chaos``, design for failure).

Three experiments, each recorded with an id, visible in ``corral status`` and
``GET /v1/chaos``, and ended by the control plane itself: a pause or a gateway fault
always carries an expiry that a timer in this process enforces, so an experiment ends on
time even when the CLI that started it is gone. (If the control plane itself dies, the
reaper kills every process group, paused ones included, and Envoy with its faults.)

- ``kill``: SIGKILL an instance's process group, as a crash; its slot restarts it.
- ``pause``: SIGSTOP it (a hung instance: its checks time out, it leaves traffic, client
  breakers open), SIGCONT at expiry. A pause outlasting the liveness budget gets the
  instance replaced, as a real hang would.
- ``gateway``: Envoy's fault filter on the routes to a service (abort with a status and/or
  delay, for a percentage of requests), set and cleared live through runtime keys.
- ``calls``: latency and/or errors on one service's calls to another, injected by the
  caller's own SDK client (so only that caller's calls to that target, not every
  caller's as at the gateway). The control plane publishes the active ones on a feed
  (``watch_calls``, served at ``contract.CALL_FAULTS_WATCH_PATH``) that callers follow;
  each carries its absolute expiry, which the SDK enforces itself, so it ends on time
  even if the control plane dies.
- ``cpu``: an instance throttled as a CPU quota throttles it (the CFS bandwidth
  controller behind ``docker --cpus`` and Kubernetes limits): every 100 ms period it is
  stopped (SIGSTOP) for ``percent`` of the period and runs the rest, until the expiry.
  Like a pause, it cannot outlive the control plane: the reaper kills every process
  group, stopped ones included.
- ``nats``: the embedded NATS server killed (its supervisor restarts it), restarted
  gracefully, or paused for a duration (SIGSTOP: connections stay open, nothing answers).
- ``database``: a service's database made unavailable for a duration. SQLite: the
  control plane holds the write lock (``BEGIN IMMEDIATE``: writers wait, then fail;
  readers go on); it is the control plane's own file lock, so it ends with the control
  plane if that dies. PostgreSQL: every connection to the service's database is
  terminated every 100 ms (``pg_terminate_backend``, as the admin), by a task of the
  control plane, so the outage ends with it too (nothing is left changed on the
  server, unlike ``ALLOW_CONNECTIONS false`` or a revoked login).

When the session stops, every active experiment is ended first, so nothing stays paused
through a graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy.engine import make_url

from corral import contract
from corral.chaos import (
    ChaosError,
    ChaosExperiment,
    ChaosOverview,
    ExperimentKind,
    ExperimentState,
    Refusal,
    Report,
    RunStore,
)
from corral.gateway import Fault, GatewayAddon
from corral.manifest import DatabaseEngine
from corral.runtime.databases import POSTGRES_URL_VARIABLE, database_name
from corral.runtime.errors import UnknownInstanceError, UnknownServiceError
from corral.runtime.orchestrator import Orchestrator

if TYPE_CHECKING:
    from corral.runtime import Instance

MAX_DURATION = 3600.0
"""No experiment outlives an hour: chaos that is forgotten is an outage."""
TERMINATE_EVERY = 0.1
"""Seconds between two rounds of terminating a PostgreSQL database's connections."""
NATS_COMPONENT = f"{contract.COMPONENT_PREFIX}nats"
"""The embedded NATS server's component (corral.broker names it so)."""
KEEP_ENDED = 20
"""Ended experiments listed under ``recent``."""
CHAOS_RUNS_DIR = Path("chaos") / "runs"
"""Under the state directory: the finished runs of experiment files (``chaos run``)."""


@dataclass(frozen=True)
class CallFault:
    """An active caller-side fault, as the feed publishes it."""

    id: str
    caller: str
    target: str
    percent: int
    abort_status: int | None
    delay_ms: int | None
    expires_at: float

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "caller": self.caller,
            "target": self.target,
            "percent": self.percent,
            "abort_status": self.abort_status,
            "delay_ms": self.delay_ms,
            "expires_at": self.expires_at,
            "remaining": max(0.0, self.expires_at - now),
        }


THROTTLE_PERIOD = 0.1
"""Seconds of one throttling period (the CFS default, ``cpu.cfs_period_us`` 100000)."""


@dataclass
class Throttle:
    """A CPU throttle in progress: the task cycling the instance, and the instance."""

    task: asyncio.Task[None]
    instance: Instance


@dataclass
class Experiment:
    id: str
    kind: ExperimentKind
    target: str
    """The instance (kill, pause) or service (gateway)."""
    started_at: float
    expires_at: float | None
    """Unix time; None for a kill, which is over at once."""
    detail: str
    state: ExperimentState = "active"
    """active, then expired (on time), stopped (asked), done (a kill) or failed."""
    ended_at: float | None = None
    outcome: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_model(self, now: float | None = None) -> ChaosExperiment:
        now = time.time() if now is None else now
        return ChaosExperiment(
            id=self.id,
            kind=self.kind,
            target=self.target,
            state=self.state,
            detail=self.detail,
            started_at=self.started_at,
            expires_at=self.expires_at,
            remaining=max(0.0, self.expires_at - now)
            if self.expires_at is not None and self.state == "active"
            else None,
            ended_at=self.ended_at,
            outcome=self.outcome,
            **self.params,
        )


class Chaos:
    """The experiments of one running system."""

    def __init__(
        self, orchestrator: Orchestrator, gateway: GatewayAddon | None, *, runs: Path
    ) -> None:
        self._orchestrator = orchestrator
        # the runs' records are redacted as the logs are (a command probe's output may
        # print a secret)
        self.runs = RunStore(runs, redact=self._redact)
        """Finished runs of experiment files, recorded by ``corral chaos run``."""
        self._gateway = gateway
        self._active: dict[str, Experiment] = {}
        self._ending: dict[str, tuple[Experiment, asyncio.Event]] = {}
        """Experiments whose undo runs now (out of ``_active``, not yet ended)."""
        self._ended: deque[Experiment] = deque(maxlen=KEEP_ENDED)
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._undo: dict[
            str,
            Fault | CallFault | Throttle | Instance | sqlite3.Connection | asyncio.Task[None],
        ] = {}
        self._count = 0
        self._calls_changed = asyncio.Event()
        """Set (then replaced) whenever the caller-side faults change."""

    # --- reading ---------------------------------------------------------------------

    def active(self) -> list[dict[str, Any]]:
        """The active experiments as JSON, for ``SystemStatus.chaos`` (the runtime's
        model, which may not import corral.chaos)."""
        now = time.time()
        return [e.to_model(now).model_dump(mode="json") for e in self._active.values()]

    def paused(self) -> set[str]:
        """Instances stopped by a pause right now (a process that replaced a paused one
        in its slot was never stopped)."""
        return {
            undo.id
            for undo in self._undo.values()
            if not isinstance(undo, Fault | CallFault | Throttle)
            and not isinstance(undo, sqlite3.Connection | asyncio.Task)
            and undo.paused_group is not None
            and undo.paused_group == undo.pgid
        }

    def overview(self) -> ChaosOverview:
        now = time.time()
        return ChaosOverview(
            active=[e.to_model(now) for e in self._active.values()],
            recent=[e.to_model(now) for e in reversed(self._ended)],
        )

    # --- experiments -----------------------------------------------------------------

    async def kill(self, target: str) -> ChaosExperiment:
        """SIGKILL one instance (``target`` an instance id, or a service: a random one)."""
        instance = self._pick(target)
        pid = instance.kill()
        if pid is None:
            raise ChaosError(
                Refusal.CONFLICT, "nothing to kill", f"{instance.id} has no process right now"
            )
        experiment = self._new("kill", instance.id, None, f"SIGKILL to pid {pid}")
        self._end(experiment, "done", "killed; its slot restarts it")
        return experiment.to_model()

    async def pause(self, target: str, seconds: float) -> ChaosExperiment:
        """SIGSTOP one instance for ``seconds``, then SIGCONT."""
        self._check_duration(seconds)
        instance = self._pick(target)
        self._refuse_if_stopped(instance, "already paused")
        pgid = instance.pause()
        if pgid is None:
            raise ChaosError(
                Refusal.CONFLICT, "nothing to pause", f"{instance.id} has no process right now"
            )
        experiment = self._new(
            "pause", instance.id, seconds, f"SIGSTOP to process group {pgid}", seconds=seconds
        )
        self._undo[experiment.id] = instance
        self._arm(experiment, seconds)
        return experiment.to_model()

    async def cpu(self, target: str, percent: int, seconds: float) -> ChaosExperiment:
        """Throttle one instance to ``100 - percent``% of the time for ``seconds`` (see
        the module doc); ``target`` an instance, or a service (a random instance)."""
        self._check_duration(seconds)
        if not 1 <= percent <= 99:
            raise ChaosError(
                Refusal.INVALID,
                "invalid share",
                f"throttle between 1% and 99% of the time, got {percent}% (100% is a pause)",
            )
        instance = self._pick(target)
        self._refuse_if_stopped(instance, "already stopped or throttled")
        if instance.pgid is None:
            raise ChaosError(
                Refusal.CONFLICT, "nothing to throttle", f"{instance.id} has no process right now"
            )
        experiment = self._new(
            "cpu",
            instance.id,
            seconds,
            f"stopped {percent}% of every {THROTTLE_PERIOD * 1000:g}ms",
            seconds=seconds,
            percent=percent,
        )
        task = asyncio.get_running_loop().create_task(
            _throttle(instance, percent / 100), name=f"corral-{experiment.id}-throttle"
        )
        self._undo[experiment.id] = Throttle(task, instance)
        self._arm(experiment, seconds)
        return experiment.to_model()

    async def fault(
        self,
        service: str,
        *,
        percent: int,
        abort_status: int | None,
        delay_ms: int | None,
        seconds: float,
    ) -> ChaosExperiment:
        """Abort and/or delay ``percent``% of the gateway's requests to ``service``."""
        self._check_duration(seconds)
        if self._gateway is None:
            raise ChaosError(
                Refusal.CONFLICT, "no gateway", "this system has no `gateway:` section"
            )
        if not self._gateway.routes_to(service):
            raise ChaosError(
                Refusal.UNKNOWN,
                "no route to this service",
                f"no gateway route leads to {service!r}",
            )
        if any(e.kind == "gateway" and e.target == service for e in self._active.values()):
            raise ChaosError(
                Refusal.CONFLICT, "already faulted", f"{service} has a gateway fault already"
            )
        if not abort_status and not delay_ms:
            raise ChaosError(
                Refusal.INVALID, "nothing to inject", "give an abort status, a delay or both"
            )
        fault = Fault(service, percent, abort_status=abort_status, delay_ms=delay_ms)
        await self._gateway.inject(fault)
        parts = [f"abort {abort_status}"] if abort_status else []
        parts += [f"delay {delay_ms}ms"] if delay_ms else []
        experiment = self._new(
            "gateway",
            service,
            seconds,
            f"{' and '.join(parts)} on {percent}% of requests",
            seconds=seconds,
            percent=percent,
            abort_status=abort_status,
            delay_ms=delay_ms,
        )
        self._undo[experiment.id] = fault
        self._arm(experiment, seconds)
        return experiment.to_model()

    async def calls(
        self,
        caller: str,
        target: str,
        *,
        percent: int,
        abort_status: int | None,
        delay_ms: int | None,
        seconds: float,
    ) -> ChaosExperiment:
        """Delay and/or abort ``percent``% of ``caller``'s calls to ``target``, in the
        caller's own client (see the module doc). Refused, with nothing changed, when
        either service is unknown, the caller is no SDK app (nothing would inject it) or
        does not declare calling the target (``calls:``): a fault on a call the
        manifest does not know is most likely a misspelt name, and would do nothing."""
        self._check_duration(seconds)
        if not abort_status and not delay_ms:
            raise ChaosError(
                Refusal.INVALID, "nothing to inject", "give an abort status, a delay or both"
            )
        plans = {}
        for name in (caller, target):
            try:
                plans[name] = self._orchestrator.service_plan(name)
            except UnknownServiceError as missing:
                raise ChaosError(Refusal.UNKNOWN, "unknown service", str(missing)) from None
        if caller == target:
            raise ChaosError(
                Refusal.INVALID, "same service", f"{caller} calling itself is not a call to fault"
            )
        calling = plans[caller]
        if calling.app is None:
            raise ChaosError(
                Refusal.INVALID,
                "not an SDK service",
                f"{caller} is not a corral.sdk app, so no client of ours makes its calls; "
                f"use `corral chaos gateway {target}` to fault the edge instead",
            )
        if target not in (calling.calls or ()):
            declared = ", ".join(calling.calls or ()) or "none"
            raise ChaosError(
                Refusal.INVALID,
                "not a declared call",
                f"{caller} does not declare calling {target} (its calls: {declared}); "
                f"add {target!r} to services.{caller}.calls in the manifest",
            )
        if any(
            e.kind == "calls" and e.target == target and e.params.get("caller") == caller
            for e in self._active.values()
        ):
            raise ChaosError(
                Refusal.CONFLICT,
                "already faulted",
                f"{caller} -> {target} has a caller-side fault already",
            )
        parts = [f"abort {abort_status}"] if abort_status else []
        parts += [f"delay {delay_ms}ms"] if delay_ms else []
        experiment = self._new(
            "calls",
            target,
            seconds,
            f"{' and '.join(parts)} on {percent}% of the calls from {caller}",
            seconds=seconds,
            percent=percent,
            abort_status=abort_status,
            delay_ms=delay_ms,
            caller=caller,
        )
        assert experiment.expires_at is not None
        self._undo[experiment.id] = CallFault(
            experiment.id, caller, target, percent, abort_status, delay_ms, experiment.expires_at
        )
        self._calls_change()
        self._arm(experiment, seconds)
        return experiment.to_model()

    def call_faults(self, caller: str | None = None) -> dict[str, Any]:
        """The feed's event: the active caller-side faults (of ``caller``'s calls)."""
        now = time.time()
        faults = [
            undo.to_json(now)
            for undo in self._undo.values()
            if isinstance(undo, CallFault) and (caller is None or undo.caller == caller)
        ]
        return {"faults": faults}

    async def watch_calls(self, caller: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """The active caller-side faults now, then again after each change."""
        while True:
            changed = self._calls_changed
            yield self.call_faults(caller)
            await changed.wait()

    def _calls_change(self) -> None:
        changed, self._calls_changed = self._calls_changed, asyncio.Event()
        changed.set()

    async def nats(self, mode: str, seconds: float | None) -> ChaosExperiment:
        """The embedded NATS server: ``kill`` (a crash; its supervisor restarts it),
        ``restart`` (graceful, answers once it is ready again) or ``pause`` (SIGSTOP for
        ``seconds``, then SIGCONT)."""
        try:
            servers = [i for i in self._orchestrator.instances_of(NATS_COMPONENT) if i.pgid]
        except UnknownServiceError:
            raise ChaosError(
                Refusal.CONFLICT, "no embedded NATS", "this system runs no NATS server of its own"
            ) from None
        if not servers:
            raise ChaosError(
                Refusal.CONFLICT, "nothing running", "the NATS server has no process right now"
            )
        server = servers[0]
        if mode == "kill":
            pid = server.kill()
            if pid is None:
                raise ChaosError(
                    Refusal.CONFLICT, "nothing to kill", "the NATS server has no process"
                )
            experiment = self._new("nats", server.id, None, f"SIGKILL to pid {pid}", mode=mode)
            self._end(experiment, "done", "killed; its supervisor restarts it")
            return experiment.to_model()
        if mode == "restart":
            experiment = self._new("nats", server.id, None, "graceful restart", mode=mode)
            try:
                await self._orchestrator.restart(NATS_COMPONENT)
            except Exception as exc:
                self._end(experiment, "failed", f"could not restart: {exc}")
                return experiment.to_model()
            self._end(experiment, "done", "restarted and ready")
            return experiment.to_model()
        if mode != "pause" or seconds is None:
            raise ChaosError(
                Refusal.INVALID, "unknown NATS fault", "kill, restart, or pause with seconds"
            )
        self._check_duration(seconds)
        if any(e.kind == "nats" and e.state == "active" for e in self._active.values()):
            raise ChaosError(
                Refusal.CONFLICT, "already paused", "the NATS server is paused already"
            )
        pgid = server.pause()
        if pgid is None:
            raise ChaosError(Refusal.CONFLICT, "nothing to pause", "the NATS server has no process")
        experiment = self._new(
            "nats",
            server.id,
            seconds,
            f"SIGSTOP to process group {pgid}",
            mode=mode,
            seconds=seconds,
        )
        self._undo[experiment.id] = server
        self._arm(experiment, seconds)
        return experiment.to_model()

    async def database(self, service: str, seconds: float) -> ChaosExperiment:
        """Make ``service``'s database unavailable for ``seconds`` (see the module doc)."""
        self._check_duration(seconds)
        try:
            plan = self._orchestrator.service_plan(service)
        except UnknownServiceError as missing:
            raise ChaosError(Refusal.UNKNOWN, "unknown service", str(missing)) from None
        if any(e.kind == "database" and e.target == service for e in self._active.values()):
            raise ChaosError(
                Refusal.CONFLICT, "already down", f"{service}'s database is down already"
            )
        database = plan.database
        undo: sqlite3.Connection | asyncio.Task[None]
        if database.engine is DatabaseEngine.SQLITE and database.sqlite_path is not None:
            path = database.sqlite_path
            try:
                undo = await asyncio.to_thread(_hold_write_lock, path)
            except sqlite3.Error as exc:
                raise ChaosError(
                    Refusal.CONFLICT, "cannot lock the database", f"{path}: {exc}"
                ) from None
            detail = f"write lock held on {path.name}"
        elif database.engine is DatabaseEngine.POSTGRES:
            whole = self._orchestrator.plan
            admin = whole.postgres_admin_url or os.environ.get(POSTGRES_URL_VARIABLE)
            if not admin:
                raise ChaosError(
                    Refusal.CONFLICT, "no PostgreSQL server", "no admin URL to act with"
                )
            name = database_name(whole.system, service)
            try:
                connection = await asyncpg.connect(_asyncpg_dsn(admin), timeout=5)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                raise ChaosError(Refusal.CONFLICT, "cannot reach PostgreSQL", str(exc)) from None
            undo = asyncio.get_running_loop().create_task(
                _terminate_connections(connection, name), name=f"corral-db-outage-{service}"
            )
            detail = f"connections to {name} terminated every {TERMINATE_EVERY:g}s"
        else:
            raise ChaosError(
                Refusal.CONFLICT, "no database", f"{service} has no database of its own"
            )
        experiment = self._new("database", service, seconds, detail, seconds=seconds)
        self._undo[experiment.id] = undo
        self._arm(experiment, seconds)
        return experiment.to_model()

    async def stop(self, experiment_id: str) -> ChaosExperiment:
        """End an active experiment now (one ending already: once it has ended)."""
        experiment = self._active.get(experiment_id)
        if experiment is None:
            ending = self._ending.get(experiment_id)
            if ending is None:
                known = ", ".join(self._active) or "none is active"
                raise ChaosError(
                    Refusal.UNKNOWN, "no such experiment", f"{experiment_id!r} ({known})"
                )
            await ending[1].wait()
            return ending[0].to_model()
        await self._finish(experiment, "stopped")
        return experiment.to_model()

    async def stop_all(self) -> list[ChaosExperiment]:
        """End every active experiment (also what a stopping session does first)."""
        stopped = []
        for experiment in list(self._active.values()):
            await self._finish(experiment, "stopped")
            stopped.append(experiment.to_model())
        return stopped

    # --- internals -------------------------------------------------------------------

    def _pick(self, target: str) -> Instance:
        try:
            return self._orchestrator.instance(target)
        except UnknownInstanceError as missing:
            try:
                running = [i for i in self._orchestrator.instances_of(target) if i.pgid]
            except UnknownServiceError:
                raise ChaosError(
                    Refusal.UNKNOWN, "unknown instance or service", str(missing)
                ) from None
            if not running:
                raise ChaosError(
                    Refusal.CONFLICT, "nothing running", f"{target} has no running instance"
                ) from None
            return random.choice(running)  # noqa: S311 - chaos, not cryptography

    def _refuse_if_stopped(self, instance: Instance, title: str) -> None:
        """A pause and a CPU throttle both signal the instance's group: one at a time."""
        if any(
            e.kind in ("pause", "cpu") and e.target == instance.id for e in self._active.values()
        ):
            raise ChaosError(
                Refusal.CONFLICT, title, f"{instance.id} is paused or throttled by an experiment"
            )

    def _check_duration(self, seconds: float) -> None:
        if not 0 < seconds <= MAX_DURATION:
            raise ChaosError(
                Refusal.INVALID,
                "invalid duration",
                f"between 0 and {MAX_DURATION:g}s, got {seconds:g}s",
            )

    def _new(
        self, kind: ExperimentKind, target: str, duration: float | None, detail: str, **params: Any
    ) -> Experiment:
        self._count += 1
        now = time.time()
        experiment = Experiment(
            id=f"chaos-{self._count}",
            kind=kind,
            target=target,
            started_at=now,
            expires_at=None if duration is None else now + duration,
            detail=detail,
            params=params,
        )
        self._active[experiment.id] = experiment
        return experiment

    def _arm(self, experiment: Experiment, seconds: float) -> None:
        async def expire() -> None:
            await asyncio.sleep(seconds)
            # Shielded: a stop arriving at this moment must not cut the undo in half.
            await asyncio.shield(self._finish(experiment, "expired"))

        self._timers[experiment.id] = asyncio.get_running_loop().create_task(
            expire(), name=f"corral-{experiment.id}"
        )

    async def _finish(self, experiment: Experiment, state: ExperimentState) -> None:
        # Out of _active before the first await: a stop and an expiry arriving together
        # must not both undo and end it (the second one waits for the first instead).
        if self._active.pop(experiment.id, None) is None:
            return
        done = asyncio.Event()
        self._ending[experiment.id] = (experiment, done)
        try:
            timer = self._timers.pop(experiment.id, None)
            if timer is not None and timer is not asyncio.current_task():
                timer.cancel()
            undo = self._undo.get(experiment.id)
            outcome = None
            try:
                if isinstance(undo, Fault):
                    assert self._gateway is not None
                    await self._gateway.clear(undo)
                    outcome = "fault cleared"
                elif isinstance(undo, Throttle):
                    undo.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await undo.task
                    outcome = "throttle ended: running freely"
                elif isinstance(undo, CallFault):
                    # Off the feed now; each caller's client also ends it at its expiry.
                    self._undo.pop(experiment.id, None)
                    self._calls_change()
                    outcome = "fault lifted"
                elif isinstance(undo, sqlite3.Connection):
                    await asyncio.to_thread(_release, undo)
                    outcome = "write lock released"
                elif isinstance(undo, asyncio.Task):
                    undo.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await undo
                    outcome = "connections allowed again"
                elif undo is not None:
                    resumed = undo.resume()
                    outcome = "SIGCONT: running again" if resumed else "its process was replaced"
            except Exception as exc:  # the experiment is over either way; say what failed
                self._end(experiment, "failed", f"could not undo: {exc}")
                return
            self._end(experiment, state, outcome)
        finally:
            self._undo.pop(experiment.id, None)
            del self._ending[experiment.id]
            done.set()

    def _end(self, experiment: Experiment, state: ExperimentState, outcome: str | None) -> None:
        experiment.state = state
        experiment.ended_at = time.time()
        experiment.outcome = outcome
        self._active.pop(experiment.id, None)
        self._ended.append(experiment)

    # --- finished runs of experiment files (corral chaos run) ----------------------

    def _redact(self, text: str) -> str:
        """``text`` without the secret values of any instance (as the logs are kept)."""
        return self._orchestrator.logs.secrets.anywhere(text)

    def record(self, report: Report) -> Report:
        return self.runs.record(report)

    def run_list(self, limit: int = 20) -> list[Report]:
        return self.runs.runs(limit)

    def run(self, run_id: str) -> Report | None:
        return self.runs.get(run_id)

    async def close(self) -> None:
        """End everything (the session is stopping); never raises."""
        with contextlib.suppress(Exception):
            await self.stop_all()


async def _throttle(instance: Instance, share: float) -> None:
    """Stop ``instance`` for ``share`` of every period until cancelled; it always ends
    running (a process that replaced it meanwhile was never stopped)."""
    try:
        while True:
            stopped = instance.pause() is not None
            await asyncio.sleep(THROTTLE_PERIOD * share)
            if stopped:
                instance.resume()
            await asyncio.sleep(THROTTLE_PERIOD * (1 - share))
    finally:
        if instance.paused_group is not None:
            instance.resume()


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """A connection holding ``path``'s write lock (``BEGIN IMMEDIATE``) until released.

    Waits up to 5 s for a writer that holds it now. The lock is this process's: if the
    control plane dies, the operating system releases it, so the outage cannot outlive
    the control plane."""
    connection = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    try:
        connection.execute("BEGIN IMMEDIATE")
    except BaseException:
        connection.close()
        raise
    return connection


def _release(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("ROLLBACK")
    finally:
        connection.close()


async def _terminate_connections(connection: asyncpg.Connection, database: str) -> None:
    """Terminate every other connection to ``database`` every :data:`TERMINATE_EVERY`
    seconds until cancelled (then close the admin connection)."""
    try:
        while True:
            with contextlib.suppress(asyncpg.PostgresError):
                await connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    database,
                )
            await asyncio.sleep(TERMINATE_EVERY)
    finally:
        with contextlib.suppress(Exception):
            await connection.close(timeout=2)


def _asyncpg_dsn(url: str) -> str:
    """An SQLAlchemy-style URL (``postgresql+asyncpg://``) as asyncpg reads it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
