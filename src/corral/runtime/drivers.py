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
import signal
from collections.abc import Callable, Mapping
from typing import Protocol

from corral.plan import Plan, ServicePlan
from corral.runtime._process import (
    Reaper,
    process_alive,
    signal_group,
    spawn,
    wait_group_gone,
)

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


class _Process:
    """A local process group; ``pid`` is its leader and the group's id."""

    container: str | None = None

    def __init__(self, proc: asyncio.subprocess.Process, reaper: Reaper) -> None:
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


class ProcessDriver:
    """Each instance a local process group, recorded with the reaper."""

    name = "process"

    def __init__(self, reaper: Reaper) -> None:
        self._reaper = reaper

    async def prepare(self, plan: Plan, reaper: Reaper) -> None:
        return None

    async def start(self, service: ServicePlan, instance: str, env: Mapping[str, str]) -> Running:
        proc = await spawn(service.argv, env=env, cwd=service.workdir)
        self._reaper.add(proc.pid)
        return _Process(proc, self._reaper)

    async def close(self) -> None:
        return None


__all__ = [
    "Driver",
    "ProcessDriver",
    "Progress",
    "Reaper",
    "Running",
    "process_alive",
    "spawn",
]
