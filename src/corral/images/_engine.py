"""The container engine's command-line client (docker or podman), and what is wrong
with it when it cannot run anything.

The CLI, not an SDK: docker-py and podman-py are two APIs for one job, and the CLI is
what the person already has and debugs with (the same commands work by hand)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from dataclasses import dataclass

from corral.errors import CorralError

ENGINES = ("docker", "podman")

_INSTALL = {
    "docker": "install Docker (Debian: `apt-get install docker.io`)",
    "podman": "install Podman (Debian: `apt-get install podman runc catatonit`)",
}
_START = {
    "docker": "start the Docker daemon (`systemctl start docker`, or `dockerd &` as root)",
    "podman": "check `podman info` (Podman needs no daemon; its storage or runtime failed)",
}

PODMAN_FLAGS = (
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=32768:32768",
)
"""Podman 4.x writes process rlimits into every OCI spec, which runc's setrlimit refuses
on hosts like CI's (docs/runtimes.md); explicit limits within the host's are accepted."""


class EngineError(CorralError):
    """The container engine is missing, not running, or refused a command."""


@dataclass(frozen=True)
class Engine:
    name: str
    """``docker`` or ``podman``."""
    binary: str

    @classmethod
    def find(cls, name: str) -> Engine:
        """The engine's client on PATH; EngineError naming what to install when absent."""
        if name not in ENGINES:
            raise EngineError(f"unknown container engine {name!r}: use docker or podman")
        binary = shutil.which(name)
        if binary is None:
            raise EngineError(f"runtime {name}: `{name}` is not on PATH; {_INSTALL[name]}")
        return cls(name, binary)

    @property
    def env(self) -> dict[str, str]:
        """The client's environment: Docker's classic builder, which needs no buildx
        plugin and which every daemon version here speaks (BuildKit's client may be
        newer than the daemon)."""
        env = dict(os.environ)
        if self.name == "docker":
            env.setdefault("DOCKER_BUILDKIT", "0")
        return env

    @property
    def run_flags(self) -> tuple[str, ...]:
        """Extra flags of ``run`` and ``build`` for this engine."""
        return PODMAN_FLAGS if self.name == "podman" else ()

    def check(self) -> str:
        """That the engine answers; its server version. EngineError naming what to start."""
        try:
            result = subprocess.run(
                [self.binary, "version", "--format", "{{.Server.Version}}"],
                capture_output=True,
                text=True,
                timeout=30,
                env=self.env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise EngineError(
                f"runtime {self.name}: `{self.name} version` hung for 30s; {_START[self.name]}"
            ) from None
        if result.returncode != 0 or not result.stdout.strip():
            detail = _tail(result.stderr or result.stdout, 3)
            raise EngineError(
                f"runtime {self.name}: the engine does not answer ({detail}); {_START[self.name]}"
            )
        return result.stdout.strip()

    def command(self, *args: str) -> list[str]:
        return [self.binary, *args]

    async def run(
        self,
        *args: str,
        stdin: bytes | None = None,
        timeout: float = 120.0,  # noqa: ASYNC109 - a bound on a client command, not a scope
    ) -> tuple[int, str, str]:
        """Run one client command; (exit code, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            *self.command(*args),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def run_sync(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )

    async def image_exists(self, tag: str) -> bool:
        code, _, _ = await self.run("image", "inspect", "--format", "{{.Id}}", tag)
        return code == 0

    async def remove_labelled(self, label: str) -> list[str]:
        """Force-remove every container with ``label`` (``key=value``); their ids."""
        code, out, _ = await self.run("ps", "-aq", "--filter", f"label={label}")
        ids = out.split() if code == 0 else []
        if ids:
            await self.run("rm", "--force", *ids)
        return ids


def _tail(text: str, lines: int) -> str:
    return " / ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "no output"


def tail(text: str, lines: int = 20) -> list[str]:
    return text.strip().splitlines()[-lines:]


__all__ = ["ENGINES", "Engine", "EngineError", "tail"]
