"""One instance slot: spawn, watch, check, restart and stop its process.

An :class:`Instance` keeps its id and port for the whole run; its process may be
replaced many times (crash, failed liveness, in-place restart). Each process lives in
one ``asyncio.TaskGroup`` (output pumps, checks, exit watcher), so nothing of it
outlives it, and cancelling the instance kills its process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from typing import Protocol

from corral.manifest import RestartPolicy
from corral.plan import CheckKind, RestartPlan, ServicePlan, instance_id
from corral.runtime._checks import CheckTarget, Prober
from corral.runtime._process import exit_status, port_in_use
from corral.runtime._runstate import process_create_time
from corral.runtime.drivers import Driver, Running
from corral.runtime.errors import StartError
from corral.runtime.events import (
    InstanceExited,
    InstanceReady,
    InstanceRestarting,
    InstanceStarted,
    InstanceStopped,
    InstanceStopping,
    LivenessFailed,
    ReadinessChanged,
    RuntimeEvent,
)
from corral.runtime.logs import LogStore, Stream
from corral.runtime.registry import InstanceRecord, InstanceState, Registry
from corral.runtime.timeline import Timeline

CRASHLOOP_AFTER = 3
"""Consecutive crashes, each without staying up ``reset_after``, that make a crash loop."""

_FAST_READINESS = 0.05
"""First readiness poll interval while starting; grows 1.5x per poll up to the period."""

_PORT_RELEASE = 2.0
"""How long a respawn on a fixed port waits for the port to be released (a killed
process of this slot may hold it for a moment) before the port counts as taken."""

_PIPE_DRAIN = 1.0
"""How long to keep reading output after the whole group is gone (a process that left
the group may hold the pipe open)."""


class Host(Protocol):
    """What an instance needs from the orchestrator."""

    registry: Registry
    logs: LogStore
    prober: Prober
    timeline: Timeline

    def emit(self, event: RuntimeEvent) -> None: ...

    def environment(self, service: ServicePlan, instance: str, port: int) -> dict[str, str]: ...

    async def before_stop(self, record: InstanceRecord) -> None: ...

    def groups_changed(self) -> None: ...


def backoff_delay(
    restart: RestartPlan, attempt: int, *, crashloop: bool, rng: random.Random | None = None
) -> float:
    """Seconds before restart number ``attempt`` (1-based) of consecutive crashes.

    Exponential with full jitter, bounded below by ``backoff_initial`` so a restart is
    never immediate; in a crash loop, between half and all of ``backoff_max``."""
    rand = rng or random  # jitter, not cryptography
    low, high = restart.backoff_initial, restart.backoff_max
    if crashloop:
        return rand.uniform(max(low, high / 2), high)
    cap = min(high, low * restart.backoff_multiplier ** max(0, attempt - 1))
    return rand.uniform(low, cap)


class Instance:
    def __init__(
        self,
        host: Host,
        service: ServicePlan,
        ordinal: int,
        *,
        address: str,
        port: int,
        component: bool,
        driver: Driver,
    ) -> None:
        self.host = host
        self.driver = driver
        self.service = service
        self.ordinal = ordinal
        self.id = instance_id(service.name, ordinal)
        self.address = address
        self.port = port
        self.component = component
        self.generation = 0
        """Processes spawned so far in this slot."""
        self.pgid: int | None = None
        """The local process of the current program (see :attr:`Running.pid`)."""
        self.container: str | None = None
        """The current program's container, under a container driver."""
        self._program: Running | None = None
        self.create_time: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop_requested = False
        self._wake = asyncio.Event()
        self._kill: asyncio.Event | None = None
        self._kill_reason = "exit"
        self._kill_message = ""
        self._changed = asyncio.Event()
        self._failure: StartError | None = None
        self._ready_once = asyncio.Event()
        self._restarts = 0
        self._env: dict[str, str] = {}
        self.paused_group: int | None = None
        """The process group a chaos pause stopped (SIGSTOP), until it is continued."""
        host.registry.put(
            InstanceRecord(
                service=service.name,
                instance=self.id,
                host=address,
                port=port,
                state=InstanceState.PENDING,
                component=component,
                labels=dict(service.labels),
            )
        )

    # --- public ------------------------------------------------------------------------

    @property
    def record(self) -> InstanceRecord:
        record = self.host.registry.snapshot().get(self.id)
        assert record is not None, f"{self.id} is not in the registry"
        return record

    @property
    def stopping(self) -> bool:
        """A stop was requested: the slot will not run another process."""
        return self._stop_requested

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._stop_requested = False
        self._failure = None
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._main(), name=self.id)

    def request_restart(self) -> int:
        """Replace the process in place (graceful stop, immediate respawn, same id and
        port). Returns the generation to pass to :meth:`wait_ready`."""
        target = self.generation + 1
        if not self.running:
            self.start()
        elif self._kill is not None and not self._kill.is_set():
            self._kill_reason, self._kill_message = "restart", "restart requested"
            self._kill.set()
        else:  # between processes (backoff): skip the rest of the wait
            self._wake.set()
        return target

    async def stop(self) -> None:
        """Graceful stop (draining, addons, SIGTERM, grace, SIGKILL); no restart after."""
        self._stop_requested = True
        self._wake.set()
        if self._kill is not None and not self._kill.is_set():
            self._kill_reason, self._kill_message = "stop", "stopped"
            self._kill.set()
        task = self._task
        if task is not None:
            # Shielded: a caller cancelled mid-stop must not leave the stop half done.
            await asyncio.shield(task)

    async def wait_spawned(self, generation: int = 1) -> None:
        while True:
            changed = self._changed
            if self.generation >= generation:
                return
            self._raise_if_hopeless(generation)
            await changed.wait()

    async def wait_ready(self, generation: int = 1) -> None:
        """Until a process of at least ``generation`` is ready; StartError if it crashes
        into a loop, exits for good, or the instance is stopped."""
        while True:
            changed = self._changed
            record = self.host.registry.snapshot().get(self.id)
            if record is None:
                raise self.start_error("removed before it became ready")
            if self.generation >= generation and record.serving:
                return
            self._raise_if_hopeless(generation)
            await changed.wait()

    # --- failure injection (corral chaos) ----------------------------------------------

    def kill(self) -> int | None:
        """SIGKILL the current program, as a crash would (the slot restarts it as after
        any crash); the pid killed, or None between processes."""
        program = self._program
        if program is None or not program.signal(signal.SIGKILL):
            return None
        return program.pid

    def pause(self) -> int | None:
        """SIGSTOP the current program (a hung instance: checks time out); the group
        stopped, or None between processes."""
        program = self._program
        if program is None or not program.signal(signal.SIGSTOP):
            return None
        self.paused_group = program.pid
        return program.pid

    def resume(self) -> bool:
        """SIGCONT what :meth:`pause` stopped; False when that process is gone (a failed
        liveness check replaced it, say): its successor was never stopped."""
        pgid, self.paused_group = self.paused_group, None
        program = self._program
        return (
            pgid is not None
            and program is not None
            and pgid == program.pid
            and program.signal(signal.SIGCONT)
        )

    def start_error(self, reason: str) -> StartError:
        return StartError(
            self.service.name, reason, instance=self.id, log_tail=self.host.logs.recent(self.id)
        )

    # --- internals -----------------------------------------------------------------------

    def _raise_if_hopeless(self, generation: int) -> None:
        if self._failure is not None and not self.running:
            raise self._failure
        record = self.record
        if record.state is InstanceState.CRASHLOOP and self.generation >= generation:
            raise self.start_error(f"crash loop: {record.message}")
        if self._stop_requested:
            raise self.start_error("stopped before it became ready")

    def _set(self, **changes: object) -> InstanceRecord | None:
        if self.host.registry.snapshot().get(self.id) is None:
            return None  # already removed (stopped for good)
        self.host.registry.update(self.id, **changes)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return self.record

    def _emit(self, event: RuntimeEvent) -> None:
        self.host.emit(event)

    async def _main(self) -> None:
        crashes = 0
        try:
            while not self._stop_requested:
                if self.service.fixed_port is not None and not await self._port_free():
                    # Spawning anyway would let the readiness check reach the program
                    # that holds the port and report this instance ready.
                    reason = f"port {self.port} is already in use"
                    self._failure = self.start_error(reason)
                    self._set(state=InstanceState.FAILED, ready=False, pid=None, message=reason)
                    return
                try:
                    proc = await self._spawn()
                except OSError as exc:
                    reason = f"cannot start {self.service.argv[0]!r}: {exc.strerror or exc}"
                    if exc.filename:
                        reason += f" ({exc.filename})"
                    self._failure = self.start_error(reason)
                    self._set(state=InstanceState.FAILED, ready=False, pid=None, message=reason)
                    return
                started = time.monotonic()
                reason = await self._supervise(proc)
                uptime = time.monotonic() - started
                if self.stopping:
                    break
                if reason == "restart":
                    self._restarts += 1
                    continue
                code, sig = exit_status(proc.returncode)
                message = _describe_exit(code, sig)
                if reason in ("liveness", "startup"):
                    message = f"{reason} check failed: {self._kill_message}"
                failed = reason != "exit" or code != 0
                policy = self.service.restart.policy
                if policy is RestartPolicy.NEVER or (
                    policy is RestartPolicy.ON_FAILURE and not failed
                ):
                    self._failure = self.start_error(f"{message} (restart policy {policy})")
                    self._set(
                        state=InstanceState.EXITED, ready=False, exit_code=code, message=message
                    )
                    return
                crashes = 1 if uptime >= self.service.restart.reset_after else crashes + 1
                crashloop = crashes >= CRASHLOOP_AFTER
                delay = backoff_delay(self.service.restart, crashes, crashloop=crashloop)
                state = InstanceState.CRASHLOOP if crashloop else InstanceState.BACKOFF
                if crashloop:
                    message = (
                        f"{message}; crashed {crashes} times in a row, next try in {delay:.1f}s"
                    )
                self._set(state=state, ready=False, exit_code=code, message=message)
                self._emit(
                    InstanceRestarting(self.service.name, self.id, delay, crashloop, crashes)
                )
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._restarts += 1
        except Exception as exc:  # a bug here must not leave a silent, dead slot
            reason = f"internal error in the supervisor: {exc!r}"
            self._failure = self.start_error(reason)
            self._set(state=InstanceState.FAILED, ready=False, message=reason)
        finally:
            if self._stop_requested:
                self._set(state=InstanceState.EXITED, ready=False, message="stopped")

    async def _port_free(self) -> bool:
        deadline = time.monotonic() + (_PORT_RELEASE if self.generation else 0.0)
        while port_in_use(self.address, self.port):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _spawn(self) -> Running:
        env = self.host.environment(self.service, self.id, self.port)
        self._env = env
        proc = await self.driver.start(self.service, self.id, env)
        self._program = proc
        self.pgid = proc.pid
        self.container = proc.container
        self.create_time = process_create_time(proc.pid)
        self.generation += 1
        self._ready_once = asyncio.Event()
        self._set(
            state=InstanceState.STARTING,
            ready=False,
            pid=proc.pid,
            container=proc.container,
            restarts=self._restarts,
            started_at=time.time(),
            exit_code=None,
            message=None,
        )
        self.host.groups_changed()
        self._emit(InstanceStarted(self.service.name, self.id, proc.pid, self.port))
        return proc

    async def _supervise(self, proc: Running) -> str:
        """Run one program to its end; why it ended: exit, liveness, startup, restart, stop."""
        pgid = proc.pid
        kill = self._kill = asyncio.Event()
        self._kill_reason = "exit"
        if self._stop_requested:
            self._kill_reason, self._kill_message = "stop", "stopped"
            kill.set()
        spawned = time.monotonic()
        expected = False
        try:
            async with asyncio.TaskGroup() as group:
                pumps = [
                    group.create_task(self._pump(proc.stdout, "stdout")),
                    group.create_task(self._pump(proc.stderr, "stderr")),
                ]
                checks = group.create_task(self._checks(spawned, proc))
                exited = group.create_task(proc.wait())
                killer = group.create_task(kill.wait())
                await asyncio.wait({exited, killer}, return_when=asyncio.FIRST_COMPLETED)
                checks.cancel()
                if exited.done():
                    killer.cancel()
                    reason = "exit"
                else:
                    reason = self._kill_reason
                    expected = reason in ("stop", "restart")
                    await self._graceful_stop(proc)
                _, pending = await asyncio.wait(pumps, timeout=_PIPE_DRAIN)
                for task in pending:
                    task.cancel()
        finally:
            self._kill = None
            if proc.returncode is None:  # cancelled: never leave the process behind
                proc.signal(signal.SIGKILL)
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(proc.wait(), 1.0)
            # Shielded: even a cancelled slot releases (a container is removed).
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(proc.release())
            self._program = None
            self.pgid = None
            self.container = None
            if self.paused_group == pgid:
                self.paused_group = None
            self.host.groups_changed()
        code, sig = exit_status(proc.returncode)
        self._emit(InstanceExited(self.service.name, self.id, code, sig, expected))
        return reason

    async def _graceful_stop(self, proc: Running) -> None:
        pgid = proc.pid
        began = time.monotonic()
        record = self._set(state=InstanceState.DRAINING, ready=False)
        self._emit(InstanceStopping(self.service.name, self.id))
        if record is not None:
            await self.host.before_stop(record)
        grace = self.service.stop_grace_period
        deadline = time.monotonic() + grace
        self._set(state=InstanceState.STOPPING)
        proc.signal(signal.SIGTERM)
        if self.paused_group == pgid:  # a stopped process cannot act on SIGTERM
            self.resume()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)
        killed = proc.returncode is None or not await proc.wait_gone(deadline)
        if killed:
            proc.signal(signal.SIGKILL)
            await proc.wait()
        self._emit(InstanceStopped(self.service.name, self.id, killed, time.monotonic() - began))

    async def _pump(self, stream: asyncio.StreamReader | None, name: Stream) -> None:
        if stream is None:
            return
        # By the chunk, not by the line: a chatty instance (Envoy's access log, a line
        # per request) cost ~10 us of this process's CPU per line read one by one.
        await self.host.logs.capture(
            stream, service=self.service.name, instance=self.id, stream=name
        )

    def _target(self) -> CheckTarget:
        return CheckTarget(self.address, self.port, self._env, self.service.workdir)

    async def _checks(self, spawned: float, proc: Running) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._readiness(spawned, proc))
            if self.service.liveness is not None or self.service.startup is not None:
                group.create_task(self._liveness())

    async def _readiness(self, spawned: float, proc: Running) -> None:
        check = self.service.readiness
        if check is None:
            self._became_ready(spawned)
            return
        prober, target = self.host.prober, self._target()

        async def probe() -> tuple[bool, str]:
            ok, message = await prober.probe(check, target)
            # A pass counts only while this instance's own process runs: once it has
            # died, whatever answered (another program on the port) is not this instance.
            if ok and not proc.alive():
                return False, "the instance's process has exited"
            return ok, message

        await asyncio.sleep(check.initial_delay)
        interval = _FAST_READINESS
        listening = False
        while True:
            ok, message = await probe()
            if ok:
                if check.kind in (CheckKind.HTTP, CheckKind.TCP):
                    self.host.timeline.mark(f"instance {self.id}", "listening")
                break
            if self.record.message != f"not ready: {message}":
                self._set(message=f"not ready: {message}")
            if check.kind in (CheckKind.HTTP, CheckKind.TCP) and not listening:
                # Probe again as soon as the port accepts (cheap connects every 10 ms),
                # rather than up to a whole interval after the program began to listen.
                listening = await prober.until_listening(target, within=interval)
                if listening:
                    self.host.timeline.mark(f"instance {self.id}", "listening")
            else:
                await asyncio.sleep(interval)
            interval = min(interval * 1.5, check.period)
        self._became_ready(spawned)
        ready, failures = True, 0
        while True:
            await asyncio.sleep(check.period)
            ok, message = await probe()
            failures = 0 if ok else failures + 1
            if ok and not ready:
                ready = True
                self._set(ready=True, message=None)
                self._emit(ReadinessChanged(self.service.name, self.id, True))
            elif not ok and ready and failures >= check.failure_threshold:
                ready = False
                text = f"readiness failing: {message}"
                self._set(ready=False, message=text)
                self._emit(ReadinessChanged(self.service.name, self.id, False, text))

    def _became_ready(self, spawned: float) -> None:
        self._set(state=InstanceState.RUNNING, ready=True, message=None)
        self._ready_once.set()
        self._emit(InstanceReady(self.service.name, self.id, time.monotonic() - spawned))

    async def _liveness(self) -> None:
        prober, target = self.host.prober, self._target()
        startup = self.service.startup
        if startup is not None:
            await asyncio.sleep(startup.initial_delay)
            failures = 0
            while True:
                ok, message = await prober.probe(startup, target)
                if ok:
                    break
                failures += 1
                if failures >= startup.failure_threshold:
                    self._failed_check("startup", message)
                    return
                await asyncio.sleep(startup.period)
        else:
            # Without a startup check, liveness begins once the instance was ready, so a
            # slow start is never mistaken for a hang (the start timeout covers that).
            await self._ready_once.wait()
        check = self.service.liveness
        if check is None:
            return
        await asyncio.sleep(check.initial_delay)
        failures = 0
        while True:
            await asyncio.sleep(check.period)
            ok, message = await prober.probe(check, target)
            failures = 0 if ok else failures + 1
            if failures >= check.failure_threshold:
                self._failed_check("liveness", message)
                return

    def _failed_check(self, kind: str, message: str) -> None:
        self._emit(LivenessFailed(self.service.name, self.id, f"{kind}: {message}"))
        if self._kill is not None and not self._kill.is_set():
            self._kill_reason, self._kill_message = kind, message
            self._kill.set()


def _describe_exit(code: int | None, sig: int | None) -> str:
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by signal {sig} ({name})"
    return f"exited with code {code}"
