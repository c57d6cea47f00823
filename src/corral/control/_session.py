"""One running system: the API server, the orchestrator and the shutdown sequence."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn

from corral import contract
from corral.api import DASHBOARD_PATH, OTLP_BASE, RunFiles, create_app, new_token
from corral.config import (
    CONFIG_DIRNAME,
    ConfigAddon,
    ConfigControl,
    ConfigStore,
    Fingerprints,
    current_user,
)
from corral.control._apply import Applied, apply_plan
from corral.control._autoscaling import AutoscaleLoop
from corral.control._chaos import CHAOS_RUNS_DIR, Chaos
from corral.gateway import GatewayAddon
from corral.manifest import Manifest, load
from corral.plan import Endpoints, Plan, resolve
from corral.runtime.addon import Addon
from corral.runtime.drivers import Driver, EarlyForkServers
from corral.runtime.errors import AlreadyRunningError
from corral.runtime.events import RuntimeEvent
from corral.runtime.orchestrator import Orchestrator
from corral.runtime.registry import InstanceRecord, Registry
from corral.runtime.status import SystemStatus
from corral.telemetry import TelemetryAddon

DAEMON_LOG = "corral.log"
"""Where `corral up -d` sends the detached control plane's own output."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _ApiServer(uvicorn.Server):
    """uvicorn without its signal capture: the session owns SIGINT/SIGTERM so that
    Ctrl-C stops the services gracefully before the API goes away."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def _exclusive(state_dir: Path) -> Iterator[None]:
    """One session per state directory: an exclusive lock on ``.corral/lock``, held for
    the whole run. Taken before anything is published or cleaned, so a second
    `corral up` racing the first can neither start a copy nor delete the first one's
    address and token files. The kernel drops the lock if this process dies."""
    state_dir.mkdir(parents=True, exist_ok=True)
    # Logs, databases and run state are the operator's alone: service output can hold
    # personal data, and SQLite files hold everything.
    state_dir.chmod(0o700)
    # `up -d` created our stdout file (a traceback may land there) before we ran.
    with contextlib.suppress(FileNotFoundError):
        (state_dir / DAEMON_LOG).chmod(0o600)
    fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            found = RunFiles(state_dir).read()
            pid = int(found[0].get("pid", 0)) if found else 0
            raise AlreadyRunningError(pid, str(state_dir)) from None
        yield
    finally:
        os.close(fd)


class SystemSession:
    """Runs a system until asked to stop (signal or ``POST /v1/down``).

    Order: API up (so instances can be given the registry address) -> orchestrator up
    (addons, then services in dependency order) -> wait -> orchestrator down (reverse
    order, graceful) -> API down -> run files removed.
    """

    def __init__(
        self,
        manifest: Manifest,
        plan: Plan,
        *,
        addons: list[Addon] | None = None,
        on_event: Callable[[RuntimeEvent], None] | None = None,
        driver: Driver | None = None,
        fork_servers: EarlyForkServers | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        """``fork_servers``: begun before this session was made (see
        :class:`~corral.runtime.drivers.EarlyForkServers`), for its instances to fork from.
        ``start_timeout``: seconds each service's instances may take to become ready."""
        self.manifest = manifest
        self.plan = plan
        self.files = RunFiles(plan.state_dir)
        self.run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        """This run, in the logs' run markers."""
        self.admin_token = new_token()
        self.discovery_token = new_token()
        self.api_port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        config_dir = plan.state_dir / CONFIG_DIRNAME
        self.config = ConfigControl(
            manifest=manifest,
            plan=plan,
            store=ConfigStore(config_dir),
            fingerprints=Fingerprints(config_dir / "fingerprint.key"),
            environ=os.environ,
            reload=self._reload,
            api_url=self.api_url,
            author=current_user(),
        )
        # Configuration first: its version is made, and secrets read, before anything runs.
        self._addons = [ConfigAddon(self.config), *(addons or [])]
        self.telemetry = next((a for a in self._addons if isinstance(a, TelemetryAddon)), None)
        if self.telemetry is not None:
            # The receiver is an API route, so its address is known before any instance.
            self.telemetry.otlp_endpoint = f"{self.api_url}{OTLP_BASE}"
        self._stop = asyncio.Event()
        self.orchestrator = Orchestrator(
            plan,
            manifest_path=manifest.path,
            addons=self._addons,
            endpoints=Endpoints(
                discovery=f"registry+{self.api_url}",
                discovery_token=self.discovery_token,
                otel_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            ),
            on_event=on_event,
            driver=driver,
            fork_servers=fork_servers,
            start_timeout=start_timeout,
        )
        timeline = self.orchestrator.timeline
        # The interpreter, the imports, the manifest and the plan, before anything runs.
        timeline.span("control plane start", timeline.origin, time.time())
        gateway = next((a for a in self._addons if isinstance(a, GatewayAddon)), None)
        self._gateway = gateway
        self.chaos = Chaos(self.orchestrator, gateway, runs=plan.state_dir / CHAOS_RUNS_DIR)
        """Failure-injection experiments (``corral chaos``)."""
        # A paused instance cannot answer a configuration change: not waited for.
        self.config.bind(self.orchestrator, unresponsive=self.chaos.paused)
        if self.telemetry is not None:
            # Spans are redacted with every secret the runtime handed any instance.
            self.telemetry.redact = self.orchestrator.logs.secrets.anywhere
            # Every captured line, once redacted, into the kept store's search index.
            self.orchestrator.logs.taps.append(self.telemetry.capture_log)
        self.ready = asyncio.Event()
        """Set once every service is ready."""
        self.autoscaler = AutoscaleLoop(self.orchestrator, self.telemetry, lambda: self.plan)
        """Replicas of services with an ``autoscale:`` policy follow their measure."""

    def _reload(self) -> tuple[Manifest, Plan]:
        """The manifest and its overlay as they are on disk now (`corral config apply`)."""
        manifest = load(self.manifest.path, environment=self.manifest.environment)
        return manifest, resolve(manifest, python=sys.executable)

    # --- ControlTarget (what the API drives) ---------------------------------------

    @property
    def registry(self) -> Registry:
        return self.orchestrator.registry

    @property
    def logs(self) -> Any:
        return self.orchestrator.logs

    def has_service(self, service: str) -> bool:
        return service in self.plan.services

    def status(self) -> SystemStatus:
        return self.orchestrator.status().model_copy(
            update={
                "api_url": self.api_url,
                "dashboard_url": f"{self.api_url}{DASHBOARD_PATH}",
                "chaos": self.chaos.active(),
                "autoscale": self.autoscaler.status(),
            }
        )

    async def circuits(self) -> list[dict[str, Any]]:
        """Circuit breakers that are not closed, across every serving SDK instance.

        Asked of the instances at the moment (each answers CIRCUITS_PATH), so the answer
        is what the callers themselves believe, not a guess from the outside."""
        targets = [
            record
            for record in self.registry.snapshot().instances
            if record.serving and not record.component and self.plan.services[record.service].app
        ]
        if not targets:
            return []
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as http:

            async def one(record: InstanceRecord) -> list[dict[str, Any]]:
                try:
                    async with http.get(record.url + contract.CIRCUITS_PATH) as response:
                        if response.status != 200:
                            return []
                        body = await response.json()
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    return []
                return [
                    {"service": record.service, "instance": record.instance, **circuit}
                    for circuit in body.get("circuits", [])
                    if circuit.get("state") != "closed"
                ]

            found = await asyncio.gather(*(one(r) for r in targets))
        return [circuit for group in found for circuit in group]

    async def scale(self, service: str, replicas: int) -> None:
        await self.orchestrator.scale(service, replicas)

    async def restart(self, service: str, *, rolling: bool = False) -> None:
        await self.orchestrator.restart(service, rolling=rolling)

    async def start_service(self, service: str) -> bool:
        return await self.orchestrator.start_service(service)

    async def reload(self, service: str, *, ready_within: float | None = None) -> None:
        await self.orchestrator.reload(service, ready_within=ready_within)

    async def apply_manifest(self) -> Applied:
        """The manifest as it is on disk now, applied as a diff (ManifestError: nothing
        changes)."""
        manifest, plan = self._reload()

        async def configure() -> None:
            await self.config.apply(author=current_user(), message="the manifest was saved")

        _, applied = await apply_plan(
            self.orchestrator, self._gateway, self.plan, plan, configure=configure
        )
        self.manifest, self.plan = manifest, plan
        return applied

    async def stop_service(self, service: str) -> None:
        await self.orchestrator.stop_service(service)

    async def request_shutdown(self) -> None:
        self._stop.set()

    # --- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until stopped. Raises the orchestrator's StartError if start-up fails
        (after stopping whatever had started), and AlreadyRunningError if another
        session holds this system's state directory."""
        with _exclusive(self.plan.state_dir):
            await self._run()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._stop.set)
        app = create_app(
            self,
            admin_token=self.admin_token,
            discovery_token=self.discovery_token,
            request_shutdown=self.request_shutdown,
            telemetry=self.telemetry,
            chaos_runs=self.chaos,
        )
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.api_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        server = _ApiServer(config)
        self.orchestrator.timeline.begin("api")
        api_task = asyncio.create_task(server.serve(), name="corral-api")
        try:
            while not server.started:
                if api_task.done():
                    api_task.result()
                await asyncio.sleep(0.01)
            self.orchestrator.timeline.end("api")
            self.files.publish(
                url=self.api_url,
                pid=os.getpid(),
                admin_token=self.admin_token,
                extra={"system": self.plan.system, "manifest": str(self.manifest.path)},
            )
            # Logs are appended across runs: this run's lines start after its marker.
            self.orchestrator.logs.mark_run(self.run_id, system=self.plan.system)
            up = asyncio.create_task(self.orchestrator.up(), name="corral-up")
            stop = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait({up, stop}, return_when=asyncio.FIRST_COMPLETED)
            if up in done:
                up.result()  # raises StartError
                self.ready.set()
                scaling = asyncio.create_task(self.autoscaler.run(), name="corral-autoscale")
                try:
                    await self._stop.wait()
                finally:
                    scaling.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await scaling
            else:
                up.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await up
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            # A second Ctrl-C during shutdown should not leave half-stopped processes.
            loop.add_signal_handler(signal.SIGINT, lambda: None)
            try:
                await self.chaos.close()  # nothing stays paused or faulted through shutdown
                await self.orchestrator.down()
            finally:
                loop.remove_signal_handler(signal.SIGINT)
                server.should_exit = True
                with contextlib.suppress(Exception):
                    await api_task
                self.files.clear()
