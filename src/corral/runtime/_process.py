"""Spawning and killing process groups, and the client side of the reaper."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

_PR_SET_PDEATHSIG = 1
_REAPER_SCRIPT = Path(__file__).with_name("_reaper.py")

_prctl: Any = None
if sys.platform == "linux":
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


def child_setup(parent: int) -> None:
    """Runs in the child between fork and exec: die with the orchestrator.

    The second line of defence after the reaper: covers the window before the reaper
    knows the group, at the cost of only reaching the direct child."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the orchestrator died before prctl took effect
        os._exit(1)


async def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    capture: bool = True,
) -> asyncio.subprocess.Process:
    """Start ``argv`` as the leader of a new session and process group.

    Raises OSError when the program or working directory is missing."""
    parent = os.getpid()
    pipe = asyncio.subprocess.PIPE if capture else asyncio.subprocess.DEVNULL
    return await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=pipe,
        stderr=pipe,
        start_new_session=True,
        preexec_fn=lambda: child_setup(parent),
        limit=1 << 20,
    )


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is left in the group.

    Zombies count as gone: an exited grandchild is reparented to init, and where init
    does not reap (some container inits), ``killpg(pgid, 0)`` would report it forever."""
    if not signal_group(pgid, 0):
        return False
    proc = Path("/proc")
    if not proc.is_dir():  # pragma: no cover - non-Linux: trust the signal
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ")".
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # pragma: no cover - no /proc (non-Linux): trust the caller
        return True
    fields = stat[stat.rfind(")") + 2 :].split()
    return bool(fields) and fields[0] not in ("Z", "X")


class _Child(Protocol):
    pid: int

    @property
    def returncode(self) -> int | None: ...


def process_alive(proc: _Child) -> bool:
    """Whether ``proc`` still runs: not yet reaped by asyncio (or reported by the fork
    server), and not a zombie that nobody has got round to reaping."""
    if proc.returncode is not None:
        return False
    return pid_alive(proc.pid)


def port_in_use(host: str, port: int) -> bool:
    """Whether another socket already listens on (or holds) ``host:port``.

    Binds with SO_REUSEADDR, as servers do, so a closed connection in TIME_WAIT does not
    count; a listener on the same port of any overlapping address does."""
    host = "127.0.0.1" if host in ("", "localhost") else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


async def wait_group_gone(pgid: int, deadline: float) -> bool:
    """Wait (monotonic ``deadline``) until no process of the group is left.

    The kernel gives no notification for a group emptying, so this polls with a
    growing interval; it only runs while grandchildren outlive their leader."""
    delay = 0.01
    while group_alive(pgid):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.1)
    return True


def exit_status(returncode: int | None) -> tuple[int | None, int | None]:
    """asyncio's returncode -> (exit code, signal number)."""
    if returncode is None:
        return None, None
    if returncode < 0:
        return None, -returncode
    return returncode, None


class Reaper:
    """Client of :mod:`corral.runtime._reaper` (see its docstring for why it exists)."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        if self._proc is not None:
            return
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            str(_REAPER_SCRIPT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _send(self, text: str) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return
        proc.stdin.write(text.encode())

    def add(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def add_container(self, engine: str, name: str) -> None:
        """Record a container: ``engine`` (the client's path) removes it at EOF."""
        self._send(f"+c {engine} {name}\n")

    def remove_container(self, engine: str, name: str) -> None:
        self._send(f"-c {engine} {name}\n")

    async def stop(self) -> None:
        """Close the pipe; the reaper kills what is still recorded and exits."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(ConnectionError):
                proc.stdin.close()
                await proc.stdin.wait_closed()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()
