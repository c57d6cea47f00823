"""Serve a Corral service: ``python -m corral.sdk.serve module:svc``.

The server is uvicorn with uvloop and httptools (chosen by ``bench/server_choice.py``),
listening on HOST/PORT from the environment, its access log off (the SDK writes one
structured line per request).

Shutdown on SIGTERM (or SIGINT):

1. readiness turns false at once (``/readyz`` answers 503) while the server keeps
   accepting, so load balancers and the registry stop sending;
2. the process waits for in-flight requests to finish (and at least ``drain_delay``),
   bounded by ``CORRAL_STOP_GRACE_PERIOD`` less a one-second margin;
3. uvicorn then stops listening, closes idle connections, runs the lifespan shutdown
   (components stopped, database disposed) and the process exits 0.

A second signal forces an immediate exit. Invalid settings print one message and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from corral import contract
from corral.sdk._logging import refresh_until_start
from corral.sdk._service import Service
from corral.sdk._settings import SettingsError

__all__ = ["EXIT_CONFIG", "load_configured", "load_target", "main", "run"]

EXIT_CONFIG = 2
SHUTDOWN_MARGIN = 1.0
"""Seconds kept back from the grace period for the lifespan shutdown itself."""


class TargetError(Exception):
    """The ``module:attribute`` target cannot be loaded."""


def load_target(target: str) -> Service[Any]:
    """Import ``module:attribute`` (the working directory is on ``sys.path``)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise TargetError(f"target {target!r} must look like 'package.module:svc'")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise TargetError(f"cannot import {module_name!r} from {cwd}: {exc}") from exc
        raise
    obj: object = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(obj, Service):
        raise TargetError(f"{target!r} is a {type(obj).__name__}, not a corral.sdk.Service")
    return obj


def load_configured(target: str | Service[Any], *, command: str) -> Service[Any] | None:
    """``target`` (loaded if given as ``module:attribute``) with its settings read, or None
    after one ``corral <command>: ...`` line on stderr: the caller exits ``EXIT_CONFIG``."""
    try:
        service = load_target(target) if isinstance(target, str) else target
        service.load_settings()
    except (TargetError, SettingsError) as exc:
        print(f"corral {command}: {exc}", file=sys.stderr)
        return None
    return service


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service[Any], grace: float) -> None:
        super().__init__(config)
        self.service = service
        self.grace = grace
        self._signalled_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Unlike uvicorn's own handler this does not re-raise the signal after shutdown:
        # a drained instance exits 0, which supervisors read as a clean stop.
        if self._signalled_at is not None or self._loop is None:
            self.should_exit = True
            self.force_exit = self._signalled_at is not None
            return
        self._signalled_at = time.monotonic()
        self.service.health.begin_drain()
        self._loop.call_soon_threadsafe(self._begin_drain, signal.Signals(sig).name)

    def _begin_drain(self, signame: str) -> None:
        self._drain_task = asyncio.ensure_future(self._drain(signame))

    async def _drain(self, signame: str) -> None:
        assert self._signalled_at is not None
        health = self.service.health
        deadline = self._signalled_at + max(self.grace - SHUTDOWN_MARGIN, 0.0)
        log = self.service.log
        log.info("draining", signal=signame, in_flight=health.in_flight, grace_period=self.grace)
        delay = self.service.drain_delay - (time.monotonic() - self._signalled_at)
        if delay > 0:
            await asyncio.sleep(min(delay, deadline - time.monotonic()))
        drained = await health.wait_idle(max(deadline - time.monotonic(), 0.0))
        if not drained:
            log.warning("grace period over, requests still in flight", in_flight=health.in_flight)
        remaining = self._signalled_at + self.grace - SHUTDOWN_MARGIN / 2 - time.monotonic()
        self.config.timeout_graceful_shutdown = max(int(remaining), 1)
        self.should_exit = True


def run(
    target: str | Service[Any],
    *,
    host: str | None = None,
    port: int | None = None,
) -> int:
    """Serve ``target`` until stopped; returns the exit code (0 clean, 2 bad settings)."""
    service = load_configured(target, command="serve")
    if service is None:
        return EXIT_CONFIG
    service.configure_telemetry()
    runtime = service.runtime
    config = uvicorn.Config(
        service.app,
        host=host or runtime.host,
        port=runtime.port if port is None else port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,  # logging is already structlog's (configure_telemetry)
        server_header=False,
        timeout_keep_alive=contract.IDLE_KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=max(int(runtime.grace_period - SHUTDOWN_MARGIN), 1),
    )
    server = _DrainingServer(config, service, runtime.grace_period)
    server.run()
    if not server.started:
        # The lifespan start failed (uvicorn logged why) or the port was taken.
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    # What the SDK's import read from the environment, read again: this process may be
    # a fork of Corral's fork server, which imported the SDK under another environment.
    refresh_until_start()
    parser = argparse.ArgumentParser(
        prog="python -m corral.sdk.serve",
        description="Serve a corral.sdk Service on HOST/PORT from the environment.",
    )
    parser.add_argument("target", help="module:attribute of the Service, e.g. greeter.app:svc")
    parser.add_argument("--host", help="override HOST")
    parser.add_argument("--port", type=int, help="override PORT")
    args = parser.parse_args(argv)
    return run(args.target, host=args.host, port=args.port)


if __name__ == "__main__":
    sys.exit(main())
