"""The fork server ("zygote"): a warm interpreter that forks service instances.

Run as a plain script on the interpreter of the plan's ``app:`` services
(``python _forkserver_main.py <fd>``, started by :mod:`corral.runtime._forkserver`), it
imports what ``python -m corral.sdk.serve`` needs (never a user module, so every fork
runs the code on disk now), then waits on the unix socket ``<fd>`` (SOCK_SEQPACKET):

- request ``{"id", "target", "env", "cwd"}`` with two fds (stdout and stderr pipes):
  fork a child that becomes its own session and process group, takes the pipes as
  fds 1 and 2 and /dev/null as 0, dies with this process (PR_SET_PDEATHSIG), and runs
  ``corral.sdk.serve`` for ``target`` as ``python -m`` would: ``os.environ`` replaced by
  ``env``, ``cwd`` as working directory, ``sys.argv``/``sys.path`` as a fresh
  interpreter computes them. Answer ``{"id", "pid"}``, or ``{"id", "errno", "error"}``
  when the child could not be set up (the working directory is missing: the spawn's
  OSError);
- when a child ends: ``{"exit": pid, "code": c}``, ``c`` as asyncio reports a return
  code (negative: killed by that signal);
- EOF (the orchestrator is gone or done): exit. PR_SET_PDEATHSIG also takes this
  process down with the orchestrator.

Fork safety: no thread and no event loop exist here at fork (checked before each fork:
a refused request makes the orchestrator spawn instead); ``random`` is reseeded in the
child by CPython's own at-fork hook; interpreter start-up state that comes from the
environment (``PYTHON*`` variables, locale, ``HOME`` for the user site, and the few
variables pre-imported modules read at import) is the same as the instance's, because
the orchestrator keys fork servers by those variables
(``corral.runtime._forkserver.startup_key``); what else was copied at import is copied
again in the child (:func:`_refresh_environment_snapshots`, and the SDK's own in
``corral.sdk.serve.main``).
One accepted difference: children share this process's string-hash secret (a fresh
interpreter draws its own), unless ``PYTHONHASHSEED`` fixes it for both.

Standard library only until the pre-imports, and no Corral control-plane import at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    # Run as a script: its own folder (corral/runtime) is no module path of a service.
    del sys.path[0]

PRELOAD = (
    "corral.sdk",
    "corral.sdk._service",
    "corral.sdk._settings",
    "uvicorn",
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.main",
    "uvicorn.loops.uvloop",
    "uvicorn.lifespan.on",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvloop",
    "httptools",
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic_settings",
    "structlog",
    "argparse",
    "pydantic.v1",  # fastapi's compatibility layer, on the first route
    "encodings.idna",
    "unicodedata",
)
"""What ``corral.sdk.serve`` imports on every start (measured in bench/startup.py);
``corral.sdk.serve`` itself is not among them: ``-m`` runs it as ``__main__``."""

PRELOAD_IF_INSTALLED = (
    # Under ``corral up`` every instance exports traces and watches its configuration:
    "opentelemetry.sdk.trace.export",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "requests",  # the OTLP exporter's transport, imported when it is built
    "corral.sdk._span_export",
    "aiohttp",
    "corral.sdk._sse",
    # What services with a database or events load (ridehail's: each about 0.2 s CPU).
    "sqlalchemy",
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "sqlalchemy.dialects.postgresql",  # SQLAlchemy loads it for any database
    "aiosqlite",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "asyncpg",
    "nats",
    "nats.js",
    "corral.sdk.events",
    "jwt",
    "corral.sdk.identity._setup",
)
"""Measured worth pre-importing (CPU per instance start), where the interpreter has them;
their import-time reads of the environment are keyed (tests/runtime/test_forkserver.py
audits it). Imported after ``ready``, one at a time while no request waits; and before
a fork, those the instance's environment says it will use (:func:`wanted`), so a
system's instances do not each import them: ridehail's nine instances spent 0.88 s of
CPU each to ready when forked before these were loaded, 0.23 s when forked after."""

_WANTED_WITH: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        (
            "opentelemetry.sdk.trace.export",
            "opentelemetry.exporter.otlp.proto.http.trace_exporter",
            "requests",
            "corral.sdk._span_export",
        ),
    ),
    ("CORRAL_CONFIG_URL", ("aiohttp", "corral.sdk._sse")),
    (
        "DATABASE_URL",
        (
            "sqlalchemy",
            "sqlalchemy.ext.asyncio",
            "sqlalchemy.orm",
            "sqlalchemy.dialects.postgresql",
        ),
    ),
    ("NATS_URL", ("nats", "nats.js", "corral.sdk.events")),
    ("CORRAL_EVENTS", ("nats", "nats.js", "corral.sdk.events")),
    ("CORRAL_IDENTITY", ("jwt", "aiohttp", "corral.sdk.identity._setup")),
)
"""Which of :data:`PRELOAD_IF_INSTALLED` the SDK imports when a variable is set (the
names are corral.contract's: this script imports nothing of Corral before it
preloads)."""

_DATABASE_DRIVERS = (
    ("sqlite", ("sqlalchemy.dialects.sqlite.aiosqlite", "aiosqlite")),
    ("postgresql+asyncpg", ("sqlalchemy.dialects.postgresql.asyncpg", "asyncpg")),
)


def wanted(env: dict[str, str]) -> list[str]:
    """The modules of :data:`PRELOAD_IF_INSTALLED` an instance with ``env`` will import."""
    names: list[str] = []
    for variable, modules in _WANTED_WITH:
        if env.get(variable):
            names.extend(modules)
    url = env.get("DATABASE_URL", "")
    for scheme, modules in _DATABASE_DRIVERS:
        if url.startswith(scheme):
            names.extend(modules)
    return list(dict.fromkeys(names))


SERVE_MODULE = "corral.sdk.serve"
_PR_SET_PDEATHSIG = 1
_MAX_MESSAGE = 1 << 20


class Child:
    """What a forked child runs once it has left the server loop."""

    def __init__(self, target: str, cwd: str) -> None:
        self.target = target
        self.cwd = cwd


def _import_optional(name: str) -> bool:
    """Import ``name`` when installed; False when its import failed otherwise, which
    ends the preloading: what it left half done stays out of the way."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        return True
    except Exception as exc:
        print(f"fork server: not pre-importing {name}: {exc!r}", file=sys.stderr)
        return False
    return True


def _prctl_pdeathsig() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Server:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pid = os.getpid()
        self.base_path = list(sys.path)
        """``sys.path`` without the script's folder: what ``-m`` puts after the cwd."""
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.later = list(PRELOAD_IF_INSTALLED)
        """Optional modules not imported yet."""

    def send(self, message: dict[str, Any]) -> None:
        self.sock.send(json.dumps(message).encode())

    def run(self) -> Child | None:
        """Serve requests until EOF (None); in a forked child, what it must run."""
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the orchestrator's
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.send({"ready": os.getpid()})
        while True:
            events = self.selector.select(0 if self.later else None)
            if not events and self.later:
                # Idle: one more of the optional modules.
                self.preload(self.later[0])
                continue
            for key, _ in events:
                if key.fileobj is self.sock:
                    try:
                        data, fds, _flags, _addr = socket.recv_fds(self.sock, _MAX_MESSAGE, 4)
                    except InterruptedError:  # pragma: no cover - PEP 475 retries
                        continue
                    if not data:
                        return None
                    child = self.handle(data, fds)
                    if child is not None:
                        return child
                else:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self.wake_r, 512):
                            pass
                    self.reap()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})

    def handle(self, data: bytes, fds: list[int]) -> Child | None:
        ident = None
        try:
            request = json.loads(data)
            ident = request["id"]
            if len(fds) != 2:
                raise ValueError(f"expected 2 fds, got {len(fds)}")
            self.preload_for(request["env"])
            if threading.active_count() != 1:
                raise RuntimeError("the fork server has threads")
            return self.fork(ident, request, fds[0], fds[1])
        except Exception as exc:
            self.send({"id": ident, "error": repr(exc)})
            return None
        finally:
            if os.getpid() == self.pid:  # the child closed them itself (``_leave``)
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def preload_for(self, env: dict[str, str]) -> None:
        """Before the fork, what the instance will import and is not loaded yet: once
        here rather than in each instance (the requests of ``corral up``'s instances
        arrive together, so the first pays and the others find it loaded)."""
        for name in wanted(env):
            if name in self.later:
                self.preload(name)

    def preload(self, name: str) -> None:
        self.later.remove(name)
        if not _import_optional(name):
            self.later.clear()

    def fork(self, ident: int, request: dict[str, Any], out: int, err: int) -> Child | None:
        env: dict[str, str] = request["env"]
        cwd: str = request["cwd"]
        target: str = request["target"]
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never return into the loop
            try:
                os.close(sync_r)
                os.setsid()
                _prctl_pdeathsig()
                if os.getppid() != parent:  # the server died before prctl took effect
                    os._exit(1)
                self._leave(out, err)
                try:
                    os.chdir(cwd)
                except OSError as exc:
                    os.write(sync_w, f"{exc.errno}".encode())
                    os._exit(127)
                os.environ.clear()
                os.environ.update(env)
                _refresh_environment_snapshots()
                os.close(sync_w)
                here = str(Path.cwd())
                sys.path[:] = [here, *self.base_path]
                return Child(target, here)
            except BaseException:  # pragma: no cover - never fall back into the loop
                os._exit(126)
        os.close(sync_w)
        with os.fdopen(sync_r, "rb") as sync:
            answer = sync.read()
        if answer:
            code = int(answer.decode() or 0)
            os.waitpid(pid, 0)
            self.send({"id": ident, "errno": code, "error": os.strerror(code)})
            return None
        self.send({"id": ident, "pid": pid})
        return None

    def _leave(self, out: int, err: int) -> None:
        """In the child: drop everything of the server, take the pipes as stdout/stderr."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        self.sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in {null, out, err} - {0, 1, 2}:
            os.close(fd)


def _refresh_environment_snapshots() -> None:
    """In the child, after ``os.environ`` is the instance's: what imported modules copied
    from the environment at import, copied again (time zone; ``wsgiref.handlers``, which
    prometheus_client imports, keeps a copy of the whole environment). What the SDK read
    at import is read again by ``corral.sdk.serve``'s ``main``; the other import-time
    reads are of start-up variables, equal by construction (the module docstring)."""
    time.tzset()
    if "wsgiref.handlers" in sys.modules:
        from wsgiref import handlers

        handlers.os_environ = handlers.read_environ()  # type: ignore[attr-defined]
        handlers.BaseHandler.os_environ = handlers.os_environ  # type: ignore[attr-defined]


def run_child(child: Child) -> None:
    """As ``python -m corral.sdk.serve <target>``: ``sys.argv[0]`` the module's file,
    ``__main__`` the module, ``SystemExit`` ending the interpreter as usual."""
    sys.argv = ["-m", child.target]  # runpy sets argv[0] to the module's file
    sys.orig_argv = [sys.executable, "-m", SERVE_MODULE, child.target]
    runpy.run_module(SERVE_MODULE, run_name="__main__", alter_sys=True)


def main() -> None:
    fd = int(sys.argv[1])
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    _prctl_pdeathsig()
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    except Exception as exc:
        sock.send(json.dumps({"failed": f"cannot import {name}: {exc!r}"}).encode())
        sys.exit(1)
    child = Server(sock).run()
    if child is None:
        return
    del sys.argv[1:]
    run_child(child)


if __name__ == "__main__":
    main()
