"""The gateway as a runtime addon: run Envoy supervised, feed it every registry change.

``start`` renders the bootstrap and xDS files, runs Envoy through ``ctx.run_component``
(so it is supervised, logged and restarted like any instance; ready once the admin
``/ready`` answers), then follows the registry: each new snapshot is rendered to EDS and
only the files that changed are renamed into place. ``before_instance_stop`` takes the
instance out of Envoy's endpoints and returns only when the admin API shows it gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from corral import contract
from corral.gateway._admin import AdminClient
from corral.gateway._admin_access import READY_PATH, STATS_PATH
from corral.gateway._deliver import XdsWriter
from corral.gateway._envoy import T_CLUSTER, T_ROUTE_CONFIG, discovery_response
from corral.gateway._errors import GatewayError, GatewayTimeoutError
from corral.gateway._faults import Fault
from corral.gateway._render import (
    Layout,
    Ports,
    render_bootstrap,
    render_clusters,
    render_eds_files,
    render_routes,
)
from corral.gateway._tracing import GatewayTracing, with_tracing
from corral.gateway._validate import envoy_binary
from corral.plan import CheckKind, CheckPlan, GatewayPlan, ServicePlan, supervised_component
from corral.runtime.addon import Addon, RuntimeContext
from corral.runtime.registry import InstanceRecord, Registry, Snapshot

COMPONENT_NAME = f"{contract.COMPONENT_PREFIX}gateway"
_LOG = logging.getLogger("corral.gateway")
# sun_path holds 108 bytes with the terminating NUL.
_MAX_SOCKET_PATH = 107
# Envoy's own log lines as JSON, like every other process in the merged stream.
_ENVOY_LOG_FORMAT = '{"timestamp":"%Y-%m-%dT%T.%fZ","level":"%l","logger":"envoy","event":"%j"}'


def envoy_component(
    *, envoy: str, bootstrap: Path, stats_port: int, workers: int, workdir: Path
) -> ServicePlan:
    """Envoy as a supervised component: ready when ``/ready`` on its stats listener
    (the admin API's, through the socket) answers 200."""
    return supervised_component(
        name=COMPONENT_NAME,
        argv=(
            envoy,
            "-c",
            str(bootstrap),
            "--disable-hot-restart",
            "--concurrency",
            str(workers),
            "--log-level",
            "warn",
            "--log-format",
            _ENVOY_LOG_FORMAT,
        ),
        workdir=workdir,
        port=stats_port,
        readiness=CheckPlan(CheckKind.HTTP, path=READY_PATH, period=0.05, timeout=1.0),
        liveness=CheckPlan(CheckKind.HTTP, path=READY_PATH, period=2.0, failure_threshold=3),
        backoff_initial=0.1,
        reset_after=10.0,
        stop_grace_period=5.0,
        database_name="corral_gateway",
    )


class GatewayAddon(Addon):
    """Runs Envoy and keeps its routes and endpoints in step with the plan and registry."""

    name = "gateway"

    def __init__(self, *, envoy: str | None = None, confirm_timeout: float = 5.0) -> None:
        self.tracing: Callable[[], GatewayTracing | None] = lambda: None
        """Where Envoy sends its spans (asked when the bootstrap is written); the control
        plane points it at its OTLP receiver."""
        self._envoy = envoy
        self._confirm_timeout = confirm_timeout
        self._plan: GatewayPlan | None = None
        self._writer: XdsWriter | None = None
        self._layout: Layout | None = None
        self._ports: Ports | None = None
        self._admin: AdminClient | None = None
        self._socket_dir: Path | None = None
        self._registry: Registry | None = None
        self._task: asyncio.Task[None] | None = None
        self._excluded: set[str] = set()
        self._last = Snapshot(0, ())
        self._address = "127.0.0.1"
        self.apply_seconds: deque[float] = deque(maxlen=1000)
        """Render+write time of recent registry changes (for status and the bench)."""
        self._faults: dict[str, Fault] = {}
        """Faults switched on, by service: set again when Envoy restarts."""
        self._envoy_pid: int | None = None
        self._reapplying: set[asyncio.Task[None]] = set()

    # --- lifecycle -----------------------------------------------------------------

    async def start(self, ctx: RuntimeContext) -> None:
        plan = ctx.plan.gateway
        if plan is None:
            return
        directory = ctx.state_dir / "gateway"
        ports = Ports(listener=plan.port or ctx.free_port(), stats=ctx.free_port())
        bootstrap = self.prepare(plan, ctx.registry.snapshot(), directory=directory, ports=ports)
        self._registry = ctx.registry
        await ctx.run_component(
            envoy_component(
                envoy=self._envoy or envoy_binary(),
                bootstrap=bootstrap,
                stats_port=ports.stats,
                workers=plan.workers,
                workdir=directory,
            )
        )
        self.follow(ctx.registry)

    def prepare(
        self, plan: GatewayPlan, snapshot: Snapshot, *, directory: Path, ports: Ports
    ) -> Path:
        """Render and write every file (EDS, CDS, RDS, bootstrap); the bootstrap's path.

        Separate from :meth:`start` so tests and tools can run Envoy themselves."""
        self._plan = plan
        self._ports = ports
        if self._socket_dir is not None:  # prepared before: that directory is done with
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        socket = directory.absolute() / "admin.sock"
        if len(str(socket).encode()) > _MAX_SOCKET_PATH:
            # A private (0700) directory with a short path instead.
            self._socket_dir = Path(tempfile.mkdtemp(prefix="corral-gw-"))
            socket = self._socket_dir / "admin.sock"
        self._layout = Layout(str(directory.absolute()), socket=str(socket))
        self._writer = XdsWriter(directory)
        self._address = "127.0.0.1" if plan.address in ("0.0.0.0", "::") else plan.address
        self._admin = AdminClient(str(socket))
        self._write_plan(snapshot)
        bootstrap = with_tracing(render_bootstrap(plan, ports, self._layout), self.tracing())
        self._writer.write("bootstrap.json", bootstrap)
        return directory / "bootstrap.json"

    def follow(self, registry: Registry) -> None:
        """Re-render on every registry change, until :meth:`stop`."""
        self._registry = registry
        self._task = asyncio.get_running_loop().create_task(self._watch(registry))

    async def stop(self) -> None:
        for task in list(self._reapplying):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def status(self) -> dict[str, Any]:
        if self._ports is None:
            return {}
        assert self._layout is not None
        return {
            "gateway_url": f"http://{self._address}:{self._ports.listener}",
            "gateway_metrics_url": f"http://127.0.0.1:{self._ports.stats}{STATS_PATH}",
            "gateway_admin_socket": self._layout.admin_socket,
        }

    # --- following the registry -------------------------------------------------------

    async def _watch(self, registry: Registry) -> None:
        async for snapshot in registry.watch():
            try:
                self.apply(snapshot)
            except Exception:  # a render bug must not stop the gateway following changes
                _LOG.exception("gateway: cannot apply registry snapshot %s", snapshot.version)

    def apply(self, snapshot: Snapshot) -> list[str]:
        """Render endpoints for ``snapshot`` and write the EDS files that changed."""
        assert self._plan is not None
        assert self._writer is not None
        started = time.perf_counter()
        self._last = snapshot
        self._follow_envoy(snapshot)
        for instance in list(self._excluded):
            record = snapshot.get(instance)
            if record is None or not record.serving:
                self._excluded.discard(instance)
        if self._excluded:
            snapshot = Snapshot(
                snapshot.version,
                tuple(r for r in snapshot.instances if r.instance not in self._excluded),
            )
        files = {
            f"eds/{name}.json": doc for name, doc in render_eds_files(self._plan, snapshot).items()
        }
        changed = self._writer.write_many(files)
        if changed:
            self.apply_seconds.append(time.perf_counter() - started)
        return changed

    def _write_plan(self, snapshot: Snapshot) -> None:
        assert self._plan is not None
        assert self._writer is not None
        assert self._layout is not None
        self.apply(snapshot)
        self._writer.write(
            "cds.json", discovery_response(render_clusters(self._plan, self._layout), T_CLUSTER)
        )
        self._writer.write(
            "rds.json", discovery_response([render_routes(self._plan)], T_ROUTE_CONFIG)
        )

    def update_plan(self, plan: GatewayPlan) -> None:
        """Apply a new gateway plan live (routes, clusters). Listener-level settings (port,
        JWT providers, body size) take effect on the next start."""
        assert self._registry is not None or self._plan is not None
        self._plan = dataclasses.replace(plan, port=self._plan.port if self._plan else plan.port)
        self._write_plan(self._registry.snapshot() if self._registry else self._last)

    # --- failure injection (corral chaos gateway) ----------------------------------------

    def routes_to(self, service: str) -> bool:
        """Whether a gateway route leads to ``service`` (only those can get faults)."""
        return self._plan is not None and any(r.service == service for r in self._plan.routes)

    async def inject(self, fault: Fault) -> None:
        """Switch ``fault`` on for the routes to its service, live (runtime keys)."""
        await self._runtime_modify(fault.overrides())
        self._faults[fault.service] = fault

    async def clear(self, fault: Fault) -> None:
        """Switch it off again."""
        self._faults.pop(fault.service, None)
        await self._runtime_modify(fault.cleared())

    def _follow_envoy(self, snapshot: Snapshot) -> None:
        """Runtime overrides live in Envoy's memory (its admin layer): a restarted Envoy
        has none, and a chaos experiment would end early while still listed as active.
        So when Envoy comes back ready as a new process, the faults are set again (within
        a readiness period of the restart; requests in between are not faulted)."""
        envoy = next(
            (r for r in snapshot.instances if r.component and r.service == COMPONENT_NAME),
            None,
        )
        if envoy is None or not envoy.serving or envoy.pid is None:
            return
        restarted = self._envoy_pid is not None and envoy.pid != self._envoy_pid
        self._envoy_pid = envoy.pid
        if restarted and self._faults:
            task = asyncio.get_running_loop().create_task(self._reapply())
            self._reapplying.add(task)
            task.add_done_callback(self._reapplying.discard)

    async def _reapply(self, attempts: int = 3) -> None:
        for attempt in range(1, attempts + 1):
            values: dict[str, str] = {}
            for fault in self._faults.values():
                values.update(fault.overrides())
            try:
                await self._runtime_modify(values)
                return
            except GatewayError:
                # The first request may meet the dead Envoy's pooled connection.
                if attempt == attempts:
                    _LOG.exception("gateway: cannot set the chaos faults again after a restart")
                    return
                await asyncio.sleep(0.05 * attempt)

    async def _runtime_modify(self, values: dict[str, str]) -> None:
        if self._admin is None:
            raise GatewayError("the gateway is not running")
        try:
            await self._admin.runtime_modify(values)
        except httpx.HTTPError as exc:
            raise GatewayError(f"Envoy's admin API refused the change: {exc}") from exc

    # --- draining --------------------------------------------------------------------

    async def before_instance_stop(self, record: InstanceRecord) -> None:
        """Take ``record`` out of Envoy's endpoints; return once Envoy confirms it."""
        if self._plan is None or self._admin is None or self._registry is None:
            return
        if record.service not in {c.name for c in self._plan.clusters} or record.component:
            return
        self._excluded.add(record.instance)
        snapshot = self._registry.snapshot()
        self.apply(snapshot)
        expected = {
            record.service: {
                r.address
                for r in snapshot.serving(record.service)
                if r.instance != record.instance and not r.component
            }
        }
        try:
            await self._admin.wait_endpoints(expected, timeout=self._confirm_timeout)
        except GatewayTimeoutError as exc:
            # Stopping must go on; the runtime stops the instance anyway.
            _LOG.warning("gateway: %s (%s)", exc, exc.context)

    async def wait_applied(
        self,
        snapshot: Snapshot,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - a deadline for polling, not a cancel scope
    ) -> float:
        """Wait until Envoy's endpoints match ``snapshot``; the seconds it took."""
        assert self._plan is not None
        assert self._admin is not None
        expected = {
            c.name: {r.address for r in snapshot.serving(c.name) if not r.component}
            for c in self._plan.clusters
        }
        return await self._admin.wait_endpoints(expected, timeout=timeout)
