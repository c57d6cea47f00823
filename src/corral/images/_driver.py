"""``corral up --runtime docker|podman``: every service instance a container.

Each program generation is ``<engine> run --rm --init --network host`` of the service's
image, attached: the engine client is the local process the slot watches (its output is
the container's, its exit code the container's), so readiness, liveness, restarts,
crash loops, drain and grace work exactly as for processes
(:class:`corral.runtime.Instance`). Signals go through the engine (``kill --signal``,
``pause``), since a signal to the client would stop the client, not the container.

- Host networking: the instance listens on the port the runtime picked, on 127.0.0.1,
  as a process would; the gateway and checks reach it unchanged (no port publishing,
  no network to create).
- Labels ``corral.system``, ``corral.service``, ``corral.instance`` and ``corral.state``
  (the run's state folder): leftovers of a run are found by label and removed.
- ``.corral/data`` bind-mounted at the same path, so SQLite URLs stay valid; the
  container runs as the orchestrator's user so it can write there.
- The environment is the runtime contract's, passed by name (``-e NAME``) so no value
  (a secret) appears on a command line; the host's PATH, HOME and venv stay outside.
- Every container is recorded with the reaper, which removes it if the orchestrator is
  SIGKILLed; a new ``up`` removes what a dead run left behind, by label.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Callable, Mapping

from corral.export import container_command, read_sources
from corral.images._base import ensure_base_image
from corral.images._build import base_id, build_image
from corral.images._engine import Engine
from corral.images._wheels import build_wheelhouse
from corral.plan import Plan, ServicePlan
from corral.runtime.drivers import Reaper, Running, process_alive, spawn

_HOST_ONLY = frozenset(
    {"PATH", "HOME", "PWD", "OLDPWD", "SHLVL", "HOSTNAME", "VIRTUAL_ENV", "PYTHONPATH",
     "PYTHONHOME", "PYTHONSTARTUP", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM", "_",
     "LD_LIBRARY_PATH", "LD_PRELOAD", "UV", "UV_PYTHON", "MAIL", "SSH_AUTH_SOCK"}
)  # fmt: skip
"""Inherited variables that describe the host, not the service: left out of the
container, whose image sets its own PATH (the venv) and home."""

_ENGINE_SIGNALS = {signal.SIGSTOP: "pause", signal.SIGCONT: "unpause"}
"""SIGSTOP to the container's init would stop only the init; the engine's pause
freezes every process of the container (the same as a stopped process group)."""


def container_environment(env: Mapping[str, str]) -> dict[str, str]:
    """What of an instance's environment goes into its container."""
    return {
        k: v
        for k, v in env.items()
        if k not in _HOST_ONLY and not k.startswith(("UV_", "PYENV", "CONDA", "BASH_FUNC"))
    }


def signal_exit(code: int) -> int:
    """The client's exit code, as asyncio reports a process: 128+N (the container was
    killed by signal N) becomes -N, so a crash reads "killed by signal 9" as for a process."""
    if 128 < code <= 128 + 64:
        return -(code - 128)
    return code


class _Container:
    """One container, through its attached engine client."""

    def __init__(
        self, proc: asyncio.subprocess.Process, engine: Engine, name: str, reaper: Reaper
    ) -> None:
        self._proc = proc
        self._engine = engine
        self._reaper = reaper
        self._tasks: set[asyncio.Task[object]] = set()
        self.pid = proc.pid
        self.container: str | None = name
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def name(self) -> str:
        assert self.container is not None
        return self.container

    @property
    def returncode(self) -> int | None:
        code = self._proc.returncode
        return None if code is None else signal_exit(code)

    async def wait(self) -> int:
        return signal_exit(await self._proc.wait())

    def alive(self) -> bool:
        return process_alive(self._proc)

    def signal(self, sig: int) -> bool:
        if not self.alive():
            return False
        verb = _ENGINE_SIGNALS.get(signal.Signals(sig))
        args = (verb, self.name) if verb else ("kill", "--signal", str(int(sig)), self.name)
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(
            self._engine.run(*args, timeout=30)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def wait_gone(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(self._proc.wait()), max(remaining, 0.0))
        except TimeoutError:
            return False
        return True

    async def release(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._proc.returncode is None:  # the client outlived the container's end
            self._proc.kill()
            await self._proc.wait()
        # --rm removes a container that ended; one whose client was killed may linger.
        await self._engine.run("rm", "--force", self.name, timeout=60)
        self._reaper.remove_container(self._engine.binary, self.name)
        self._reaper.remove(self.pid)


class ContainerDriver:
    """Runs each service instance as a container of its image (see module docstring)."""

    def __init__(self, engine: str, progress: Callable[[str], None] | None = None) -> None:
        self.name = engine
        self._progress = progress or (lambda line: None)
        self._engine: Engine | None = None
        self._plan: Plan | None = None
        self._reaper: Reaper | None = None
        self.images: dict[str, str] = {}
        """Service -> the tag of its image, once prepared."""

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine.find(self.name)
        return self._engine

    async def prepare(self, plan: Plan, reaper: Reaper) -> None:
        engine = self.engine
        await asyncio.to_thread(engine.check)
        self._plan, self._reaper = plan, reaper
        stale = await engine.remove_labelled(f"corral.state={plan.state_dir}")
        if stale:
            self._progress(f"removed {len(stale)} container(s) a previous run left behind")
        base = await ensure_base_image(engine, self._progress)
        identity = await base_id(engine, base)
        requirements = read_sources(plan).requirements
        wheelhouse = await build_wheelhouse(requirements, self._progress)
        for service in plan.start_order:
            self.images[service] = await build_image(
                engine, plan, service, base_image=base, base=identity,
                wheelhouse=wheelhouse, requirements=requirements, progress=self._progress,
            )  # fmt: skip

    async def start(self, service: ServicePlan, instance: str, env: Mapping[str, str]) -> Running:
        plan, reaper, engine = self._plan, self._reaper, self.engine
        assert plan is not None, "prepare() first"
        assert reaper is not None, "prepare() first"
        inside = container_environment(env)
        name = f"corral-{plan.system}-{instance}-{secrets.token_hex(3)}"
        data = plan.state_dir / "data"
        argv = [
            *engine.command("run", "--rm", "--init", "--network", "host", "--name", name),
            # The image's HEALTHCHECK is for exports; here the runtime's checks run.
            "--no-healthcheck",
            *engine.run_flags,
            "--user", f"{os.getuid()}:{os.getgid()}",
            "--stop-timeout", str(int(service.stop_grace_period) + 1),
            "--label", f"corral.system={plan.system}",
            "--label", f"corral.service={service.name}",
            "--label", f"corral.instance={instance}",
            "--label", f"corral.state={plan.state_dir}",
            "--volume", f"{data}:{data}",
            *(arg for key in sorted(inside) for arg in ("--env", key)),
            self.images[service.name],
            *container_command(service),
        ]  # fmt: skip
        client_env = {**engine.env, **inside}
        # Recorded before it exists: a SIGKILL between run and the record leaves nothing.
        reaper.add_container(engine.binary, name)
        proc = await spawn(argv, env=client_env, cwd=plan.root)
        reaper.add(proc.pid)
        return _Container(proc, engine, name, reaper)

    async def close(self) -> None:
        if self._plan is not None and self._engine is not None:
            await self._engine.remove_labelled(f"corral.state={self._plan.state_dir}")
