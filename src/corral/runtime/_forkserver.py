"""The orchestrator's side of the fork server (:mod:`corral.runtime._forkserver_main`).

Every ``app:`` instance used to start a fresh interpreter and pay ~0.7 s of CPU for the
interpreter and its imports before its own code ran. A fork server is started once per
interpreter (and start-up environment, see :func:`startup_key`), imports all that, and
forks each instance from there; the child imports only the service's own modules.

Who dies with whom (why no subreaper): the fork server runs in its own session like any
spawned program, with ``PR_SET_PDEATHSIG`` = SIGKILL towards the orchestrator, and the
reaper records its group; each child sets ``PR_SET_PDEATHSIG`` towards the fork server
and is recorded with the reaper as its own group, exactly as a spawned instance. So a
SIGKILLed orchestrator takes the fork server down at once (kernel) and every instance
group with it (kernel, then the reaper). A subreaper orchestrator was rejected: it would
have to reap every orphan of every service (the reaper's docstring), and the exit
status of a forked child is already known to the fork server, which reports it. A killed
fork server takes its children down too (their exit code is then -SIGKILL, as for any
killed instance): the slots restart them, by plain spawn until a new fork server is
ready, so nothing runs unsupervised.

Exit codes reach the slot as asyncio reports them: the fork server waits for its
children and sends ``os.waitstatus_to_exitcode`` (negative for a signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from corral.runtime._process import child_setup, pid_alive

_SCRIPT = Path(__file__).with_name("_forkserver_main.py")
SERVE_MODULE = "corral.sdk.serve"
START_TIMEOUT = 60.0
"""Seconds the fork server may take to import everything before it counts as failed."""
_STREAM_LIMIT = 1 << 20

_STARTUP_PREFIXES = (
    "PYTHON",
    "_PYTHON",
    "LC_",
    "OTEL_",
    "PROMETHEUS_",
    "WEBSOCKETS_",
    "PYDANTIC_",
    "PSUTIL_",
    "AIOHTTP_",
    "MULTIDICT_",
    "YARL_",
    "PROPCACHE_",
    "FROZENLIST_",
    "PROTOCOL_BUFFERS_",
    "SSL",  # SSL_CERT_FILE/DIR (read by OpenSSL for aiohttp's default context), SSLKEYLOGFILE
)
_STARTUP_VARIABLES = frozenset(
    {
        "HOME",
        "LANG",
        "LANGUAGE",
        "NO_COLOR",
        "FORCE_COLOR",
        "prometheus_multiproc_dir",
        "SPHINX_BUILD",
    }
)
_READ_AFTER_IMPORT = ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_")
"""Of the prefixes above, what is read only once a service runs (so per-service values
do not need fork servers of their own)."""


def is_startup_variable(name: str) -> bool:
    """Whether the interpreter reads ``name`` while starting (``PYTHON*``: path, bytecode,
    hash seed, flags; the locale; ``HOME`` for the user site), or a module the fork
    server imports reads it at import (measured by tests/runtime/test_forkserver.py's
    audit: structlog's colours, OpenTelemetry's propagators, context and span limits,
    prometheus_client's multiprocess mode, websockets' limits, psutil, pydantic,
    aiohttp's C extensions and default TLS context, protobuf's implementation)."""
    if name in _STARTUP_VARIABLES:
        return True
    return name.startswith(_STARTUP_PREFIXES) and not name.startswith(_READ_AFTER_IMPORT)


class ForkUnavailable(Exception):
    """The fork server cannot fork this instance (gone, refused, not started)."""


def forkable(argv: Sequence[str]) -> bool:
    """``argv`` is exactly ``python -m corral.sdk.serve <target>``."""
    return len(argv) == 4 and argv[1] == "-m" and argv[2] == SERVE_MODULE


def startup_key(python: str, env: Mapping[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What must be equal for a fork to be the same as a fresh ``python``: the
    interpreter and every variable read before the fork (:func:`is_startup_variable`).
    The fork server runs with exactly these variables."""
    return python, tuple(sorted((k, v) for k, v in env.items() if is_startup_variable(k)))


class ForkedChild:
    """A child of the fork server, as much of ``asyncio.subprocess.Process`` as a
    driver uses: ``pid``, ``returncode``, ``wait()``, ``stdout``, ``stderr``."""

    def __init__(
        self,
        pid: int,
        exited: asyncio.Future[int],
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        transports: list[asyncio.BaseTransport],
    ) -> None:
        self.pid = pid
        self._exited = exited
        self.stdout: asyncio.StreamReader | None = stdout
        self.stderr: asyncio.StreamReader | None = stderr
        self._transports = transports

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def close(self) -> None:
        for transport in self._transports:
            transport.close()


class ForkServer:
    """One fork server process and the socket to it."""

    def __init__(self, python: str, env: Mapping[str, str]) -> None:
        self.python = python
        self.env = dict(env)
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._ready: asyncio.Future[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._next_id = 0
        self._buffer_error: str | None = None
        self.dead = False
        self._watchers: set[asyncio.Task[None]] = set()
        self.spawned = asyncio.Event()
        """Set once the process exists (or could not be started): it imports from then
        on without this loop."""

    @property
    def alive(self) -> bool:
        return not self.dead and self._sock is not None

    async def start(self, *, within: float = START_TIMEOUT) -> None:
        """Start the server and wait until it imported everything; ForkUnavailable
        when it cannot."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        parent = os.getpid()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self.python,
                str(_SCRIPT),
                str(theirs.fileno()),
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=(theirs.fileno(),),
                preexec_fn=lambda: child_setup(parent),
            )
        except OSError as exc:
            ours.close()
            raise ForkUnavailable(f"cannot start the fork server: {exc}") from exc
        finally:
            theirs.close()
            self.spawned.set()
        self.pid = self._proc.pid
        ours.setblocking(False)
        self._sock = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._readable)
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), within)
        except TimeoutError:
            await self.close()
            self._ready.exception()  # retrieved: nobody else waits for it
            raise ForkUnavailable("the fork server did not start in time") from None
        except ForkUnavailable:
            await self.close()
            raise

    async def fork(self, target: str, env: Mapping[str, str], cwd: Path) -> ForkedChild:
        """Fork an instance running ``python -m corral.sdk.serve target``.

        OSError as a spawn raises it when ``cwd`` is missing; ForkUnavailable when the
        server is gone or refuses."""
        sock = self._sock
        if sock is None or self.dead:
            raise ForkUnavailable("the fork server is not running")
        loop = asyncio.get_running_loop()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self._next_id += 1
        ident = self._next_id
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[ident] = answer
        message = {"id": ident, "target": target, "env": dict(env), "cwd": str(cwd)}
        try:
            try:
                socket.send_fds(sock, [json.dumps(message).encode()], [out_w, err_w])
            except OSError as exc:
                raise ForkUnavailable(f"the fork server does not answer: {exc}") from exc
            finally:
                os.close(out_w)
                os.close(err_w)
            reply = await answer
        except BaseException:
            self._pending.pop(ident, None)
            os.close(out_r)
            os.close(err_r)
            raise
        if "pid" not in reply:
            os.close(out_r)
            os.close(err_r)
            if "errno" in reply:
                raise OSError(reply["errno"], reply["error"], str(cwd))
            raise ForkUnavailable(f"the fork server refused: {reply.get('error')}")
        pid = int(reply["pid"])
        transports: list[asyncio.BaseTransport] = []
        readers: list[asyncio.StreamReader] = []
        for fd in (out_r, err_r):
            reader = asyncio.StreamReader(limit=_STREAM_LIMIT, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            transport, _ = await loop.connect_read_pipe(
                functools.partial(_same, protocol), os.fdopen(fd, "rb", 0)
            )
            transports.append(transport)
            readers.append(reader)
        return ForkedChild(pid, self._exits[pid], readers[0], readers[1], transports)

    def _readable(self) -> None:
        sock = self._sock
        assert sock is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost("the fork server exited")
                return
            try:
                message = json.loads(data)
            except ValueError:
                continue
            if "ready" in message:
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
            elif "failed" in message:
                if self._ready is not None and not self._ready.done():
                    self._ready.set_exception(ForkUnavailable(str(message["failed"])))
            elif "exit" in message:
                exited = self._exits.pop(int(message["exit"]), None)
                if exited is not None and not exited.done():
                    exited.set_result(int(message["code"]))
            elif "id" in message:
                if "pid" in message:  # before any later message: its exit's future
                    self._exits[int(message["pid"])] = loop.create_future()
                answer = self._pending.pop(message["id"], None)
                if answer is not None and not answer.done():
                    answer.set_result(message)
                elif "pid" in message:  # asked by a cancelled start: no one runs it
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(int(message["pid"]), 9)

    def _lost(self, reason: str) -> None:
        """The server is gone: its children die with it (PR_SET_PDEATHSIG)."""
        if self.dead:
            return
        self.dead = True
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            loop.remove_reader(self._sock.fileno())
        failure = ForkUnavailable(reason)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(failure)
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(failure)
        self._pending.clear()
        exits, self._exits = self._exits, {}
        for pid, exited in exits.items():
            task = loop.create_task(_killed_with_server(pid, exited))
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)

    async def close(self) -> None:
        """Stop the server (EOF on its socket); its remaining children die with it."""
        if self._sock is not None and not self.dead:
            # Before the socket is closed: a reader left on a closed fd would swallow the
            # next registration of that fd number (asyncio only updates its own map when
            # the mask is unchanged, so the kernel never polls the new file).
            self._lost("the fork server was stopped")
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self.dead = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def _same(protocol: asyncio.StreamReaderProtocol) -> asyncio.StreamReaderProtocol:
    return protocol


async def _killed_with_server(pid: int, exited: asyncio.Future[int]) -> None:
    """A child of a dead fork server got SIGKILL from the kernel; report it once gone
    (its exit status went to whoever reaped it)."""
    delay = 0.005
    while pid_alive(pid):
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    if not exited.done():
        exited.set_result(-9)
