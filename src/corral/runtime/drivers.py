"""The seam between an instance slot and what runs its program: a :class:`Driver`
starts one :class:`Running` per process generation.

:class:`~corral.runtime._instance.Instance` keeps everything a runtime promises
(checks, restart with backoff, crash loop, drain, grace period, logs); a driver only
starts the program and signals it. :class:`ProcessDriver` runs it as a local process
group (the default runtime); ``corral.images.ContainerDriver`` runs it as a container
of the service's image. System components (Envoy, nats-server) always run through the
process driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from corral.plan import Plan, ServicePlan
from corral.runtime._forkserver import (
    ForkedChild,
    ForkServer,
    forkable,
    startup_key,
)
from corral.runtime._process import (
    Reaper,
    process_alive,
    signal_group,
    spawn,
    wait_group_gone,
)

_log = logging.getLogger("corral.runtime")

Progress = Callable[[str], None]
"""Where a driver reports slow preparation (image builds) to a person."""


class Running(Protocol):
    """One started program: a process group, or a container behind its engine client."""

    pid: int
    """The local process whose end is the program's end (the program itself, or the
    engine client attached to the container); also the reaper's and chaos' handle."""
    container: str | None
    """The container's name, for containers."""
    stdout: asyncio.StreamReader | None
    stderr: asyncio.StreamReader | None

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def alive(self) -> bool:
        """Still running (not exited, not a zombie)."""
        ...

    def signal(self, sig: int) -> bool:
        """Send ``sig`` to the whole program; False when it is already gone."""
        ...

    async def wait_gone(self, deadline: float) -> bool:
        """Until nothing of the program is left (monotonic ``deadline``)."""
        ...

    async def release(self) -> None:
        """After the end: forget it in the reaper, remove what is left (a container)."""
        ...


class Driver(Protocol):
    name: str
    """``process``, ``docker`` or ``podman``: shown in status."""

    async def prepare(self, plan: Plan, reaper: Reaper) -> None:
        """Before anything of the system starts: check the engine, build images.
        Raises a :class:`~corral.errors.CorralError` a person can act on."""
        ...

    async def start(self, service: ServicePlan, instance: str, env: Mapping[str, str]) -> Running:
        """Start one program of ``instance``; OSError when it cannot be started."""
        ...

    async def close(self) -> None:
        """After the last instance stopped."""
        ...


class _Child(Protocol):
    """A started local process: asyncio's, or a child of the fork server."""

    pid: int
    stdout: asyncio.StreamReader | None
    stderr: asyncio.StreamReader | None

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


class _Process:
    """A local process group; ``pid`` is its leader and the group's id."""

    container: str | None = None

    def __init__(self, proc: _Child, reaper: Reaper) -> None:
        self._proc = proc
        self._reaper = reaper
        self.pid = proc.pid
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        return await self._proc.wait()

    def alive(self) -> bool:
        return process_alive(self._proc)

    def signal(self, sig: int) -> bool:
        return signal_group(self.pid, sig)

    async def wait_gone(self, deadline: float) -> bool:
        return await wait_group_gone(self.pid, deadline)

    async def release(self) -> None:
        # The leader is gone; whatever it left in its group goes too.
        signal_group(self.pid, signal.SIGKILL)
        self._reaper.remove(self.pid)
        if isinstance(self._proc, ForkedChild):
            self._proc.close()


FORK_SERVER_VARIABLE = "CORRAL_FORK_SERVER"
"""``0`` turns the fork server off: every instance is a fresh interpreter."""

_MAX_FORK_SERVERS = 4
"""Distinct start-up environments (:func:`startup_key`) served by fork servers; more
(an unusual manifest) spawn."""


_START_ATTEMPTS = 3
"""Fork server starts that may fail in a row (an interpreter without Corral, say) before
the driver spawns every instance of that interpreter for the rest of the run."""

_Key = tuple[str, tuple[tuple[str, str], ...]]


def fork_enabled() -> bool:
    """The fork server is on unless ``CORRAL_FORK_SERVER=0``."""
    return os.environ.get(FORK_SERVER_VARIABLE, "1").strip() != "0"


@dataclass
class Warming:
    """A fork server starting (or started) for a plan's instances."""

    task: asyncio.Task[ForkServer]
    began: float
    """Unix time its start began."""


class EarlyForkServers:
    """Fork servers begun before the orchestrator exists, for its process driver to
    adopt (``corral up``'s control plane begins them before it imports itself, so the
    two imports run on two cores at once). Keys as :meth:`ProcessDriver.warm`'s."""

    def __init__(self) -> None:
        self.warming: dict[_Key, Warming] = {}
        self._servers: list[ForkServer] = []

    async def start(self, services: Iterable[tuple[ServicePlan, Mapping[str, str]]]) -> None:
        """Begin a server per start-up environment of ``services`` (``app:`` ones);
        return once each has been spawned (it imports on its own from then on)."""
        for service, env in services:
            if not forkable(service.argv):
                continue
            key = startup_key(service.argv[0], env)
            if key in self.warming or len(self.warming) >= _MAX_FORK_SERVERS:
                continue
            python, startup = key
            server = ForkServer(python, dict(startup))
            self._servers.append(server)
            task = asyncio.ensure_future(_started(server))
            task.add_done_callback(_retrieved)
            self.warming[key] = Warming(task, time.time())
        for server in self._servers:
            await server.spawned.wait()

    async def close(self) -> None:
        """Stop the servers no driver adopted (the start failed before the orchestrator
        ran)."""
        for warming in self.warming.values():
            warming.task.cancel()
            with contextlib.suppress(BaseException):
                await (await warming.task).close()


async def _started(server: ForkServer) -> ForkServer:
    await server.start()
    return server


def _retrieved(task: asyncio.Task[ForkServer]) -> None:
    # Its failure is handled by the fork that awaits it; a server no fork awaits must
    # not be reported as an exception nobody retrieved.
    if not task.cancelled():
        task.exception()


class ProcessDriver:
    """Each instance a local process group, recorded with the reaper.

    ``app:`` instances (``python -m corral.sdk.serve target``) are forked from a warm
    fork server (:mod:`corral.runtime._forkserver`) of their interpreter and start-up
    environment, started on first use; when it is missing, dies or refuses, the
    instance is spawned and the fork server restarted. ``fork=False`` (or
    ``CORRAL_FORK_SERVER=0``) spawns everything."""

    name = "process"

    def __init__(
        self, reaper: Reaper, *, fork: bool | None = None, early: EarlyForkServers | None = None
    ) -> None:
        self._reaper = reaper
        if fork is None:
            fork = fork_enabled()
        self._fork = fork
        self._early = early
        self._servers: dict[_Key, asyncio.Task[ForkServer]] = {}
        self._start_failures: dict[_Key, int] = {}
        self._given_up: set[_Key] = set()
        self._restarted: set[_Key] = set()
        """Keys whose first fork server is gone: a start never waits for a new one."""
        self._closed = False

    async def prepare(self, plan: Plan, reaper: Reaper) -> None:
        return None

    async def start(self, service: ServicePlan, instance: str, env: Mapping[str, str]) -> Running:
        if self._fork and not self._closed and forkable(service.argv):
            forked = await self._forked(service, env)
            if forked is not None:
                return forked
        proc = await spawn(service.argv, env=env, cwd=service.workdir)
        self._reaper.add(proc.pid)
        return _Process(proc, self._reaper)

    def warm(self, service: ServicePlan, env: Mapping[str, str]) -> Warming | None:
        """Start the fork server ``service``'s instances will fork from, without waiting
        for it: ``env`` is what their environment will hold (its start-up variables
        decide which server). Called by ``up`` before the addons start, so the server's
        imports (about a second of CPU) run beside them on another core rather than
        before the first instance. A server no instance asks for after all (an addon
        set a start-up variable) idles until :meth:`close`. A server begun early
        (:class:`EarlyForkServers`) for the same key is adopted instead. The server's
        start, when this call began or adopted one."""
        if not self._fork or self._closed or not forkable(service.argv):
            return None
        key = startup_key(service.argv[0], env)
        if key in self._given_up or key in self._servers:
            return None
        early = self._early.warming.pop(key, None) if self._early is not None else None
        if early is not None and len(self._servers) < _MAX_FORK_SERVERS:
            self._servers[key] = early.task
            early.task.add_done_callback(self._adopted)
            return early
        task = self._server_task(key)
        return None if task is None else Warming(task, time.time())

    def _adopted(self, task: asyncio.Task[ForkServer]) -> None:
        if not task.cancelled() and task.exception() is None:
            pid = task.result().pid
            if pid is not None:
                self._reaper.add(pid)

    def _server_task(self, key: _Key) -> asyncio.Task[ForkServer] | None:
        if key not in self._servers and len(self._servers) >= _MAX_FORK_SERVERS:
            return None
        task = self._servers[key] = asyncio.ensure_future(self._start_server(key))
        task.add_done_callback(_retrieved)
        return task

    async def _forked(self, service: ServicePlan, env: Mapping[str, str]) -> Running | None:
        """The instance forked, or None: spawn it (the fork server cannot)."""
        key = startup_key(service.argv[0], env)
        if key in self._given_up:
            return None
        task = self._servers.get(key)
        if task is None:
            task = self._server_task(key)
            if task is None:
                return None
        elif not task.done() and key in self._restarted:
            return None  # a replacement is still starting: spawning is sooner
        try:
            server = await asyncio.shield(task)
            child = await server.fork(service.argv[3], env, service.workdir)
        except OSError:
            raise  # what a spawn raises too: the working directory is missing
        except Exception as exc:  # gone, refused, or could not start: spawn instead
            self._unavailable(key, task, service.name, exc)
            return None
        self._start_failures.pop(key, None)
        self._reaper.add(child.pid)
        return _Process(child, self._reaper)

    def _unavailable(
        self, key: _Key, task: asyncio.Task[ForkServer], service: str, exc: Exception
    ) -> None:
        if self._servers.get(key) is not task:
            return  # another start already reported it and started a new one
        failed_start = not task.cancelled() and task.exception() is not None
        if failed_start:
            self._start_failures[key] = self._start_failures.get(key, 0) + 1
        if self._start_failures.get(key, 0) >= _START_ATTEMPTS:
            self._given_up.add(key)
            del self._servers[key]
            _log.warning(
                "fork server failed to start %d times (%s); spawning every instance",
                _START_ATTEMPTS,
                exc,
            )
            return
        _log.warning("fork server unavailable (%s); spawning %s, restarting it", exc, service)
        # Restarted in the background: this instance spawns now, later ones fork.
        self._restarted.add(key)
        self._server_task(key)

    async def _start_server(self, key: _Key) -> ForkServer:
        python, startup = key
        server = ForkServer(python, dict(startup))
        await server.start()
        assert server.pid is not None
        self._reaper.add(server.pid)
        return server

    @property
    def fork_server_tasks(self) -> int:
        """Fork servers started or starting."""
        return len(self._servers)

    @property
    def fork_servers(self) -> list[int]:
        """Pids of the fork servers running now (tests, chaos)."""
        pids = []
        for task in self._servers.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                server = task.result()
                if server.alive and server.pid is not None:
                    pids.append(server.pid)
        return pids

    async def close(self) -> None:
        self._closed = True
        if self._early is not None:
            await self._early.close()
        servers, self._servers = self._servers, {}
        for task in servers.values():
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                server = await task
                await server.close()
                if server.pid is not None:
                    self._reaper.remove(server.pid)


__all__ = [
    "FORK_SERVER_VARIABLE",
    "Driver",
    "EarlyForkServers",
    "ProcessDriver",
    "Progress",
    "Reaper",
    "Running",
    "process_alive",
    "spawn",
]
