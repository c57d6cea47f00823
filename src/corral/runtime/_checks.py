"""Running one health check (HTTP, TCP or command) against an instance."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from corral.plan import CheckKind, CheckPlan
from corral.runtime._process import signal_group, spawn

LISTEN_POLL = 0.01
"""Seconds between connects while waiting for a starting instance to listen."""


@dataclass(frozen=True)
class CheckTarget:
    host: str
    port: int
    env: Mapping[str, str]
    cwd: Path


class Prober:
    """Runs checks; one shared aiohttp session (created lazily inside the loop)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # A fresh connection per probe, as Kubernetes does: a kept-alive connection
            # would hide a listener that stopped accepting.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True, limit=0),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def until_listening(self, target: CheckTarget, *, within: float) -> bool:
        """Up to ``within`` seconds: whether ``target``'s port accepts a connection,
        tried every :data:`LISTEN_POLL` seconds (a refused loopback connect costs a few
        microseconds; an HTTP probe many times that)."""
        host = _probe_host(target.host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.setblocking(False)
                try:
                    async with asyncio.timeout(max(deadline - loop.time(), LISTEN_POLL)):
                        await loop.sock_connect(sock, (host, target.port))
                except (OSError, TimeoutError):
                    pass
                else:
                    return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(LISTEN_POLL, remaining))

    async def probe(self, check: CheckPlan, target: CheckTarget) -> tuple[bool, str]:
        """(passed, message). Never raises (apart from cancellation)."""
        host = _probe_host(target.host)
        try:
            async with asyncio.timeout(check.timeout):
                if check.kind is CheckKind.HTTP:
                    return await self._probe_http(check, host, target.port)
                if check.kind is CheckKind.TCP:
                    _, writer = await asyncio.open_connection(host, target.port)
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
                    return True, "tcp connect ok"
                return await _probe_command(check, target)
        except TimeoutError:
            return False, f"{check.kind} check timed out after {check.timeout:g}s"
        except (OSError, aiohttp.ClientError) as exc:
            return False, f"{check.kind} check failed: {exc or type(exc).__name__}"

    async def _probe_http(self, check: CheckPlan, host: str, port: int) -> tuple[bool, str]:
        url = f"http://{host}:{port}{check.path or '/'}"
        async with self._http().get(url, allow_redirects=False) as response:
            await response.read()
            if 200 <= response.status < 400:
                return True, f"GET {check.path} -> {response.status}"
            return False, f"GET {check.path} -> {response.status}"


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


async def _probe_command(check: CheckPlan, target: CheckTarget) -> tuple[bool, str]:
    proc = await spawn(check.argv, env=target.env, cwd=target.cwd, capture=False)
    try:
        code = await proc.wait()
    finally:
        # Timed out, cancelled or done: a check leaves no process behind.
        signal_group(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            await asyncio.shield(proc.wait())
    if code == 0:
        return True, "command exited 0"
    return False, f"command {check.argv[0]} exited {code}"
