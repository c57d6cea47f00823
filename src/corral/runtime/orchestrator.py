"""The local orchestrator: runs a Plan's services as supervised processes.

Lifecycle (``up`` ... ``down``), in the order Nameko documents for its extensions:

1. stale-run cleanup: a previous run whose orchestrator died leaves ``run.json``; its
   process groups that still live are killed (:class:`~corral.runtime.events.StaleRunCleaned`);
2. the reaper starts (see :mod:`corral.runtime._reaper` for why);
3. every addon's ``start(ctx)``, all at once (none may need another started); addons
   may run supervised system components through :meth:`Orchestrator.run_component`;
4. services start as soon as their ``depends_on`` conditions hold (``started``: each
   dependency's processes are spawned; ``healthy``: each is ready), independent ones in
   parallel; ``up`` returns when every instance is ready.

``down`` stops services in reverse dependency order (a service stops once everything
depending on it has stopped), each instance gracefully; then every addon's ``stop()`` (in
reverse order), then system components, then the reaper; ``run.json`` is removed.

Every instance of a service is its own process group with the runtime-contract
environment on top of what it inherits from the orchestrator's (see
:mod:`corral.runtime._environ`: not contract variables it may itself have inherited, not
:data:`CONTROL_PLANE_SECRETS`, not the variables secrets are read from); a component
(Envoy, nats-server) inherits an allow-list only. Instance ids are ``<service>-<n>``;
ordinals are never reused in a run; a slot keeps its port across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral import contract
from corral.manifest import Condition
from corral.plan import (
    Endpoints,
    Plan,
    SecretSource,
    ServicePlan,
    instance_environment,
    instance_id,
)
from corral.runtime import _runstate
from corral.runtime._checks import Prober
from corral.runtime._environ import (
    BYTECODE_CACHE,
    component_environment,
    inherited_environment,
    secret_values,
)
from corral.runtime._instance import Instance
from corral.runtime._process import Reaper
from corral.runtime.addon import Addon
from corral.runtime.drivers import Driver, EarlyForkServers, ProcessDriver
from corral.runtime.errors import (
    AlreadyRunningError,
    CorralRuntimeError,
    NotRunningError,
    ServiceStoppedError,
    StartError,
    UnknownInstanceError,
    UnknownServiceError,
)
from corral.runtime.events import (
    AddonFailed,
    InstanceReady,
    InstanceStarted,
    RuntimeEvent,
    ServiceReady,
    ServiceStarting,
    ServiceStopped,
    StaleRunCleaned,
    StartFailed,
    SystemReady,
)
from corral.runtime.logs import LogStore
from corral.runtime.registry import InstanceRecord, InstanceState, Registry
from corral.runtime.status import ServiceStatus, SystemStatus
from corral.runtime.systems import RunningSystem, SystemsIndex
from corral.runtime.timeline import Timeline

_log = logging.getLogger(__name__)

# "CORRAL_POSTGRES_URL" is databases.POSTGRES_URL_VARIABLE, spelled out because importing
# databases would load asyncpg and SQLAlchemy at start-up (see _ensure_database).
CONTROL_PLANE_SECRETS: frozenset[str] = frozenset({"CORRAL_POSTGRES_URL"})
"""Variables only the orchestrator may see, never passed to instances or components.

A deny-list on top of the inherited environment: ``CORRAL_POSTGRES_URL`` is the admin
(superuser) URL used to provision every service's database; a service that saw it could
connect to, or drop, any other service's database. Add here any variable that carries a
control-plane credential."""


@dataclass(eq=False)
class _Service:
    plan: ServicePlan
    component: bool
    desired: int
    resume_replicas: int
    """How many instances ``start_service`` runs after a stop (or a scale to 0): the
    count before it, else the manifest's (at least one)."""
    instances: dict[str, Instance] = field(default_factory=dict)
    next_ordinal: int = 1
    database_url: str | None = None
    database_ready: bool = False
    started: asyncio.Event = field(default_factory=asyncio.Event)
    healthy: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.plan.name


class Orchestrator:
    """Supervises one system on this machine. Also the addons' ``RuntimeContext``."""

    def __init__(
        self,
        plan: Plan,
        *,
        manifest_path: Path,
        addons: Sequence[Addon] = (),
        endpoints: Endpoints = Endpoints(),
        on_event: Callable[[RuntimeEvent], None] | None = None,
        start_timeout: float = 120.0,
        addon_timeout: float = 10.0,
        systems: SystemsIndex | None = None,
        driver: Driver | None = None,
        fork_servers: EarlyForkServers | None = None,
    ) -> None:
        self._manifest_path = manifest_path
        """Shown in status and ``corral ls`` (the plan holds only its folder)."""
        self._plan = plan
        self.addons = tuple(addons)
        self.endpoints = endpoints
        self.on_event = on_event
        self.start_timeout = start_timeout
        """Seconds an instance may take to become ready before ``up``/``scale`` fail."""
        self.addon_timeout = addon_timeout
        """Bound on every addon's ``before_instance_stop`` for one instance."""
        self.registry = Registry()
        self.logs = LogStore(plan.state_dir / "logs")
        self.prober = Prober()
        self.reaper = Reaper()
        self._processes = ProcessDriver(self.reaper, early=fork_servers)
        self.driver: Driver = driver if driver is not None else self._processes
        """What runs service instances; components always run as processes."""
        self.started_at: float | None = None
        self._state = "idle"
        self._services: dict[str, _Service] = {
            name: _Service(
                service,
                component=False,
                desired=service.replicas,
                resume_replicas=max(service.replicas, 1),
            )
            for name, service in plan.services.items()
        }
        self._components: list[str] = []
        self._ports: set[int] = set()
        self._down: asyncio.Task[None] | None = None
        self._save_scheduled = False
        self._create_time = _runstate.process_create_time(os.getpid())
        self.timeline = Timeline(origin=self._create_time)
        """Where ``up``'s time went (see :mod:`corral.runtime.timeline`)."""
        self._systems = systems if systems is not None else SystemsIndex()
        """Where ``corral ls`` finds this system while it runs."""

    # --- RuntimeContext -----------------------------------------------------------------

    @property
    def plan(self) -> Plan:
        return self._plan

    @property
    def state_dir(self) -> Path:
        return self._plan.state_dir

    @property
    def run_file(self) -> Path:
        return self.state_dir / _runstate.RUN_FILE

    @property
    def state(self) -> str:
        """idle, starting, running, stopping or stopped."""
        return self._state

    def free_port(self) -> int:
        """A free TCP port on the loopback interface, never handed out twice in a run."""
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((self.endpoints.host if self._bindable() else "127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in self._ports:
                self._ports.add(port)
                return port
        raise OSError("no free port found")  # pragma: no cover

    def _bindable(self) -> bool:
        return self.endpoints.host not in ("", "localhost")

    async def run_component(self, service: ServicePlan) -> None:
        """Supervise a system component like an instance; return once it is ready."""
        self._require_running(allow_starting=True)
        if service.name in self._services:
            raise ValueError(f"component name {service.name!r} is already a service")
        entry = _Service(
            service, component=True, desired=service.replicas, resume_replicas=service.replicas
        )
        self._services[service.name] = entry
        self._components.append(service.name)
        try:
            await self._start_service(entry)
        except StartError as error:
            self.emit(StartFailed(error.service, error.instance, error.reason))
            raise

    # --- lifecycle ----------------------------------------------------------------------

    async def up(self) -> None:
        """Start addons, then every service in dependency order; return when all are
        ready. On failure everything started is stopped and StartError is raised."""
        if self._state != "idle":
            raise CorralRuntimeError(f"this orchestrator was already started ({self._state})")
        began = time.monotonic()
        self.timeline.begin("up")
        self._clean_stale_run()  # before owning anything: a live run's files stay untouched
        self._state = "starting"
        self.started_at = time.time()
        try:
            for sub in ("logs", "data"):
                (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
            await self.reaper.start()
            # Before anything runs: an engine that is missing or down fails here.
            await self.driver.prepare(self._plan, self.reaper)
            self._save_run_state()
            self._register()
            self._warm_fork_servers()
            # Together: none needs another started (NATS and Envoy start side by side;
            # the telemetry addon reads the others only once it runs).
            async with asyncio.TaskGroup() as addons:
                for addon in self.addons:
                    addons.create_task(self._start_addon(addon))
            async with asyncio.TaskGroup() as group:
                for name in self._plan.start_order:
                    group.create_task(self._start_service(self._services[name]))
        except BaseException as exc:
            failure = _first_start_error(exc)
            if failure is not None:
                failure = self._with_services_not_ready(failure)
                self.emit(StartFailed(failure.service, failure.instance, failure.reason))
            await self.down()
            if failure is not None:
                raise failure from None
            if isinstance(exc, BaseExceptionGroup):
                # An addon's own error (no nats-server binary, say), as it would be alone.
                raise _first_error(exc) from None
            raise
        self._state = "running"
        self.timeline.end("up")
        self.timeline.finish()
        self.emit(SystemReady(time.monotonic() - began))

    async def _start_addon(self, addon: Addon) -> None:
        self.timeline.begin(f"addon {addon.name}")
        await addon.start(self)
        self.timeline.end(f"addon {addon.name}")

    def _with_services_not_ready(self, failure: StartError) -> StartError:
        """A start that timed out names every service not ready at that moment (one
        service's deadline ends the whole start, and the others' state is the clue)."""
        if not failure.reason.startswith(_NOT_READY_AFTER):
            return failure
        late = [
            name
            for name in self._plan.start_order
            if name in self._services and not self._services[name].healthy.is_set()
        ]
        return StartError(
            failure.service,
            f"{failure.reason}; services not ready: {', '.join(late)}",
            instance=failure.instance,
            log_tail=failure.log_tail,
        )

    async def down(self) -> None:
        """Stop everything gracefully, in reverse dependency order. Idempotent."""
        if self._down is None:
            self._down = asyncio.get_running_loop().create_task(self._teardown())
        await asyncio.shield(self._down)

    async def scale(self, service: str, replicas: int) -> None:
        """Run ``replicas`` instances: new ones count once ready (StartError otherwise,
        and they are stopped again); scaling down stops the newest first, gracefully.
        Slots whose process is gone for good (FAILED, or EXITED under restart policy
        never/on-failure) do not count: they are dropped and replaced."""
        entry = self._service(service)
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        self._require_running()
        async with entry.lock:
            await self._scale(entry, replicas)

    async def start_service(self, service: str) -> bool:
        """Start a stopped service (after ``stop_service`` or a scale to 0) with as many
        instances as it had before; return once they are ready. True if it started
        instances; False if the service was running already (nothing changes)."""
        entry = self._service(service)
        self._require_running()
        async with entry.lock:
            if any(instance.running for instance in entry.instances.values()):
                return False
            await self._scale(entry, entry.desired or entry.resume_replicas)
        return True

    async def _scale(self, entry: _Service, replicas: int) -> None:
        dead = [i for i in entry.instances.values() if not i.running]
        await self._stop_instances(entry, dead)
        current = sorted(entry.instances.values(), key=lambda i: i.ordinal)
        self._set_desired(entry, replicas)
        if replicas > len(current):
            await self._ensure_database(entry)
            fresh = [self._new_instance(entry) for _ in range(replicas - len(current))]
            try:
                await self._wait_ready(entry, [(i, 1) for i in fresh])
            except BaseException as exc:
                self._set_desired(entry, len(current))
                await self._stop_instances(entry, fresh)
                self._report(exc)
                raise
        elif replicas < len(current):
            await self._stop_instances(entry, current[replicas:][::-1])
        if entry.desired > 0:
            entry.started.set()
            entry.healthy.set()

    @staticmethod
    def _set_desired(entry: _Service, replicas: int) -> None:
        if replicas == 0 and entry.desired > 0:
            entry.resume_replicas = entry.desired  # what `start_service` brings back
        entry.desired = replicas

    async def restart(self, service: str, *, rolling: bool = False) -> None:
        """Restart every instance. Rolling: one at a time, each replacement (a new
        instance) ready before the old one stops, so at least N-1 stay ready; a service
        on a fixed port cannot overlap and is restarted in place, one at a time.
        A stopped service has nothing to restart: ServiceStoppedError, not a success."""
        entry = self._service(service)
        self._require_running()
        async with entry.lock:
            current = sorted(entry.instances.values(), key=lambda i: i.ordinal)
            if not current:
                raise ServiceStoppedError(service)
            try:
                if not rolling:
                    await self._wait_ready(entry, [(i, i.request_restart()) for i in current])
                    return
                for old in current:
                    if entry.plan.fixed_port is not None:
                        await self._wait_ready(entry, [(old, old.request_restart())])
                        continue
                    fresh = self._new_instance(entry)
                    try:
                        await self._wait_ready(entry, [(fresh, 1)])
                    except BaseException:
                        await self._stop_instances(entry, [fresh])
                        raise
                    await self._stop_instances(entry, [old])
            except StartError as exc:
                self._report(exc)
                raise

    async def reload(self, service: str, *, ready_within: float | None = None) -> None:
        """Swap every instance of ``service`` for one running its code as it is on disk
        now (``corral up --watch``). All replacements start at once and must all become
        ready before the old instances are drained out of the gateway and stopped, one
        by one; so the service keeps its capacity and no request fails.

        Fails fast: a replacement that exits even once (a syntax or import error) or
        does not become ready is a StartError carrying its log tail; every replacement
        is then stopped and the old instances keep serving. Unlike ``restart``, no crash
        loop is waited out: a person is waiting for the answer to a save.
        A service on a fixed port cannot overlap: it is restarted in place instead.
        ``ready_within``: seconds the replacements may take (default ``start_timeout``)."""
        entry = self._service(service)
        self._require_running()
        if entry.component:
            raise CorralRuntimeError(f"{service} is a system component")
        if entry.plan.fixed_port is not None:
            await self.restart(service, rolling=True)
            return
        async with entry.lock:
            current = sorted(entry.instances.values(), key=lambda i: i.ordinal)
            if not current:
                raise ServiceStoppedError(service)
            fresh = [self._new_instance(entry) for _ in current]
            try:
                await self._ready_or_first_failure(fresh, ready_within or self.start_timeout)
            except BaseException:
                await self._stop_instances(entry, fresh)
                raise
            # One at a time: the gateway confirms each drain against the endpoints
            # that remain, which parallel drains would keep changing under it.
            for old in current:
                await self._stop_instances(entry, [old])

    # --- manifest edits (``corral up --watch``) ---------------------------------------

    def replan(self, plan: Plan) -> None:
        """Take ``plan`` as the system's from now on (its start order for ``down``, its
        services for spawning). Call it before :meth:`add_service` and after
        :meth:`remove_service`; services it does not name must be removed."""
        if plan.system != self._plan.system:
            raise CorralRuntimeError("a running system cannot change its name")
        self._plan = plan

    async def add_service(self, service: ServicePlan) -> None:
        """Start a service that the running system did not have (after :meth:`replan`
        with a plan naming it); return once its instances are ready. On StartError its
        instances are stopped again and it is forgotten."""
        self._require_running()
        if service.name in self._services:
            raise CorralRuntimeError(f"service {service.name!r} exists already")
        entry = _Service(
            service,
            component=False,
            desired=service.replicas,
            resume_replicas=max(service.replicas, 1),
        )
        self._services[service.name] = entry
        try:
            async with asyncio.timeout(self.start_timeout):
                await self._start_service(entry)
        except BaseException as exc:
            await self._stop_instances(entry, list(entry.instances.values()))
            del self._services[service.name]
            if isinstance(exc, TimeoutError):
                raise StartError(service.name, "not ready in time") from None
            self._report(exc)
            raise

    async def remove_service(self, service: str) -> None:
        """Stop every instance of ``service`` gracefully and forget it."""
        entry = self._service(service)
        self._require_running()
        if entry.component:
            raise CorralRuntimeError(f"{service} is a system component")
        async with entry.lock:
            await self._stop_instances(entry, list(entry.instances.values())[::-1])
            del self._services[service]
        self.emit(ServiceStopped(service))

    async def replace(self, service: ServicePlan) -> None:
        """Run ``service`` (a new configuration of a running service) in place of its
        current plan, through :meth:`reload`; if its new instances cannot start, the
        old plan is kept and StartError raised (the old instances serve on)."""
        entry = self._service(service.name)
        before = entry.plan
        self.reconfigure(service)
        try:
            if entry.instances:
                await self.reload(service.name)
        except BaseException:
            entry.plan = before
            raise
        if service.replicas != entry.desired:
            await self.scale(service.name, service.replicas)

    async def _ready_or_first_failure(self, instances: Sequence[Instance], within: float) -> None:
        failed = {InstanceState.BACKOFF, InstanceState.CRASHLOOP}
        failed |= {InstanceState.EXITED, InstanceState.FAILED}
        try:
            async with asyncio.timeout(within):
                async for snapshot in self.registry.watch():
                    records = [(i, snapshot.get(i.id)) for i in instances]
                    for instance, record in records:
                        if record is None:
                            raise instance.start_error("removed before it became ready")
                        if record.state in failed:
                            # The supervisor sets these states after the process's
                            # output is read to its end: the log tail is complete.
                            why = record.message or str(record.state)
                            raise instance.start_error(why)
                    if all(record is not None and record.serving for _, record in records):
                        return
        except TimeoutError:
            late = next((i for i in instances if not i.record.serving), instances[0])
            why = late.record.message or "readiness never passed"
            raise late.start_error(f"not ready after {within:g}s ({why})") from None

    async def stop_service(self, service: str) -> None:
        """Stop every instance of ``service`` gracefully (``scale`` brings it back)."""
        entry = self._service(service)
        self._require_running()
        async with entry.lock:
            self._set_desired(entry, 0)
            await self._stop_instances(entry, list(entry.instances.values())[::-1])
        self.emit(ServiceStopped(service))

    def instance(self, instance_id: str) -> Instance:
        """The running slot of a service instance (never a component: Corral's own
        parts are not chaos targets)."""
        for entry in self._services.values():
            if not entry.component and instance_id in entry.instances:
                return entry.instances[instance_id]
        known = sorted(i for e in self._services.values() if not e.component for i in e.instances)
        raise UnknownInstanceError(instance_id, known)

    def instances_of(self, service: str) -> list[Instance]:
        """The slots of ``service``, oldest first."""
        return sorted(self._service(service).instances.values(), key=lambda i: i.ordinal)

    def reconfigure(self, service: ServicePlan) -> None:
        """Spawn the service's instances from now on with this plan (same name; a new
        configuration). Running processes keep theirs until restarted."""
        entry = self._service(service.name)
        if entry.component:
            raise CorralRuntimeError(f"{service.name} is a system component")
        entry.plan = service

    def service_plan(self, service: str) -> ServicePlan:
        """The plan the service's instances are spawned from now."""
        return self._service(service).plan

    def status(self) -> SystemStatus:
        """The system: services (desired replicas, ready count), instances (registry
        records), plus each addon's ``status()`` fields."""
        snapshot = self.registry.snapshot()
        services: dict[str, ServiceStatus] = {}
        for name, entry in self._services.items():
            records = snapshot.of(name)
            services[name] = ServiceStatus(
                replicas=entry.desired,
                ready=sum(1 for r in records if r.serving),
                instances=len(records),
                component=entry.component,
                depends_on={dep: str(cond) for dep, cond in entry.plan.depends_on.items()},
                port=entry.plan.fixed_port,
            )
        contributed: dict[str, Any] = {}
        addon_errors: dict[str, str] = {}
        for addon in self.addons:
            try:
                contributed.update(addon.status())
            except Exception as exc:  # an addon's status must not break ours
                addon_errors[addon.name] = str(exc)
        # Validated: an addon's field of the wrong type is a bug to see here, not a
        # surprise for the API's readers.
        return SystemStatus.model_validate(
            {
                **contributed,
                "system": self._plan.system,
                "state": self._state,
                "runtime": self.driver.name,
                "pid": os.getpid(),
                "manifest": str(self._manifest_path),
                "state_dir": str(self.state_dir),
                "started_at": self.started_at,
                "registry_version": snapshot.version,
                "services": services,
                "instances": list(snapshot.instances),
                "addon_errors": addon_errors,
                "startup": self.timeline.phases(),
            }
        )

    # --- Host (what instances use) ------------------------------------------------------

    def emit(self, event: RuntimeEvent) -> None:
        if isinstance(event, InstanceStarted):
            self.timeline.begin(f"instance {event.instance}")
        elif isinstance(event, InstanceReady):
            self.timeline.end(f"instance {event.instance}")
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a display callback must never break supervision
            _log.exception("on_event callback failed for %r", event)

    def environment(self, service: ServicePlan, instance: str, port: int) -> dict[str, str]:
        """The environment ``instance`` is spawned with. Its secret values are handed to
        the log store first, so its output is redacted from the first line."""
        entry = self._services.get(service.name)
        if entry is not None and entry.component:
            # No addon variables, no discovery token, no secret: where to listen.
            env = component_environment(os.environ)
            env.update(service.env)
            env.update(
                {
                    contract.SYSTEM: self._plan.system,
                    contract.SERVICE: service.name,
                    contract.INSTANCE: instance,
                    contract.HOST: self.endpoints.host,
                    contract.PORT: str(port),
                }
            )
            return env
        addons: list[Addon] = []
        if entry is not None:
            service = entry.plan  # the current one: reconfigure() may have replaced it
            addons = list(self.addons)
        database = entry.database_url if entry is not None else None
        env = self._instance_environment(service, instance, port, addons, database)
        self.logs.secrets.add(instance, secret_values(env))
        return env

    def _instance_environment(
        self,
        service: ServicePlan,
        instance: str,
        port: int,
        addons: Sequence[Addon],
        database_url: str | None,
    ) -> dict[str, str]:
        env = inherited_environment(
            os.environ,
            withheld=self._withheld(),
            bytecode_cache=str(self.state_dir / BYTECODE_CACHE),
        )
        for addon in addons:
            env.update(addon.environment(service))
        env.update(
            instance_environment(
                self._plan,
                service,
                instance=instance,
                port=port,
                endpoints=self.endpoints,
                database_url=database_url,
            )
        )
        return env

    def _warm_fork_servers(self) -> None:
        """Have the process driver start the fork servers the services will fork from,
        while the addons start (NATS, Envoy): their start-up variables come from the
        inherited environment and the plan, which the addons do not change (see
        :meth:`ProcessDriver.warm`)."""
        if not isinstance(self.driver, ProcessDriver):
            return
        for service in self._plan.services.values():
            warming = self.driver.warm(service, startup_environment(self._plan, service))
            if warming is not None:
                name = f"fork server {self.driver.fork_server_tasks}"
                self.timeline.span(name, warming.began)
                warming.task.add_done_callback(functools.partial(self._warmed, name))

    def _warmed(self, phase: str, _: object) -> None:
        self.timeline.end(phase)

    def _withheld(self) -> set[str]:
        """Inherited variables no instance may see: the control plane's credentials and
        every variable a secret is read from (its service gets it under its own name)."""
        plans = [*self._plan.services.values(), *(e.plan for e in self._services.values())]
        sources = {
            ref.name
            for plan in plans
            for ref in plan.secrets.values()
            if ref.source is SecretSource.ENV
        }
        return sources | CONTROL_PLANE_SECRETS

    async def before_stop(self, record: InstanceRecord) -> None:
        if not self.addons:
            return

        async def one(addon: Addon) -> None:
            try:
                await addon.before_instance_stop(record)
            except Exception as exc:
                self.emit(AddonFailed(addon.name, "before_instance_stop", str(exc)))

        try:
            async with asyncio.timeout(self.addon_timeout):
                await asyncio.gather(*(one(addon) for addon in self.addons))
        except TimeoutError:
            self.emit(
                AddonFailed("*", "before_instance_stop", f"timed out after {self.addon_timeout:g}s")
            )

    def groups_changed(self) -> None:
        """Save run.json soon (once per burst of changes)."""
        if self._save_scheduled:
            return
        self._save_scheduled = True
        asyncio.get_running_loop().call_soon(self._save_run_state)

    # --- internals ----------------------------------------------------------------------

    def _service(self, name: str) -> _Service:
        entry = self._services.get(name)
        if entry is None:
            raise UnknownServiceError(name, sorted(self._services))
        return entry

    def _report(self, exc: BaseException) -> None:
        if isinstance(exc, StartError):
            self.emit(StartFailed(exc.service, exc.instance, exc.reason))

    def _require_running(self, *, allow_starting: bool = False) -> None:
        allowed = {"running", "starting"} if allow_starting else {"running"}
        if self._state not in allowed:
            raise NotRunningError(f"the system is not running (state: {self._state})")

    def _new_instance(self, entry: _Service) -> Instance:
        if self._state in ("stopping", "stopped"):
            raise NotRunningError("the system is stopping")
        ordinal = entry.next_ordinal
        entry.next_ordinal += 1
        fixed = entry.plan.fixed_port
        instance = Instance(
            self,
            entry.plan,
            ordinal,
            address=self.endpoints.host,
            port=fixed if fixed is not None else self.free_port(),
            component=entry.component,
            driver=self._processes if entry.component else self.driver,
        )
        entry.instances[instance.id] = instance
        instance.start()
        return instance

    async def _ensure_database(self, entry: _Service) -> None:
        if entry.database_ready:
            return
        # Imported here: provisioning pulls in asyncpg and SQLAlchemy, which a system
        # without databases should not pay for at start-up.
        from corral.runtime import databases

        try:
            entry.database_url = await databases.service_database_url(
                self._plan, entry.plan, os.environ
            )
        except databases.DatabaseSetupError as exc:
            raise StartError(entry.name, str(exc)) from exc
        entry.database_ready = True

    async def _start_service(self, entry: _Service) -> None:
        phase = f"service {entry.name}"
        self.timeline.begin(phase)
        for dependency, condition in entry.plan.depends_on.items():
            other = self._services[dependency]
            await (other.healthy if condition is Condition.HEALTHY else other.started).wait()
        if entry.plan.depends_on:
            self.timeline.mark(phase, "dependencies met")
        began = time.monotonic()
        self.emit(ServiceStarting(entry.name, entry.desired, entry.component))
        try:
            await self._ensure_database(entry)
            fresh = [self._new_instance(entry) for _ in range(entry.desired)]
            async with asyncio.TaskGroup() as group:
                for instance in fresh:
                    group.create_task(instance.wait_spawned())
            entry.started.set()
            await self._wait_ready(entry, [(i, 1) for i in fresh])
        except BaseException as exc:
            failure = _first_start_error(exc)
            if failure is not None:
                raise failure from None
            raise
        entry.healthy.set()
        self.timeline.end(phase)
        self.emit(ServiceReady(entry.name, time.monotonic() - began))

    async def _wait_ready(self, entry: _Service, targets: Iterable[tuple[Instance, int]]) -> None:
        targets = list(targets)
        try:
            async with asyncio.timeout(self.start_timeout), asyncio.TaskGroup() as group:
                for instance, generation in targets:
                    group.create_task(instance.wait_ready(generation))
        except TimeoutError:
            waiting = [i for i, _ in targets if not i.record.serving] or [targets[0][0]]
            why = "; ".join(
                f"{i.id}: {i.record.message or 'readiness never passed'}" for i in waiting
            )
            reason = f"{_NOT_READY_AFTER} {self.start_timeout:g}s ({why})"
            raise waiting[0].start_error(reason) from None
        except BaseExceptionGroup as group_error:
            failure = _first_start_error(group_error)
            if failure is None:
                raise
            raise failure from None

    async def _stop_instances(self, entry: _Service, instances: Sequence[Instance]) -> None:
        if not instances:
            return
        async with asyncio.TaskGroup() as group:
            for instance in instances:
                group.create_task(instance.stop())
        for instance in instances:
            entry.instances.pop(instance.id, None)
            self.logs.close(instance.id)
        self.registry.remove_many(i.id for i in instances)
        self.groups_changed()

    async def _teardown(self) -> None:
        self._state = "stopping"
        try:
            stopped = {name: asyncio.Event() for name in self._plan.start_order}

            async def stop_one(name: str) -> None:
                for dependent in self._plan.dependents(name):
                    await stopped[dependent].wait()
                entry = self._services[name]
                had = bool(entry.instances)
                await self._stop_instances(entry, list(entry.instances.values())[::-1])
                stopped[name].set()
                if had:
                    self.emit(ServiceStopped(name))

            async with asyncio.TaskGroup() as group:
                for name in self._plan.stop_order:
                    group.create_task(stop_one(name))
            for addon in reversed(self.addons):
                try:
                    await addon.stop()
                except Exception as exc:  # stop() must not raise; carry on if it does
                    self.emit(AddonFailed(addon.name, "stop", str(exc)))
            for name in reversed(self._components):
                entry = self._services[name]
                await self._stop_instances(entry, list(entry.instances.values())[::-1])
        finally:
            # Whatever happened above, no process outlives down(): the reaper kills any
            # group still recorded when its pipe closes.
            for entry in self._services.values():
                for instance in entry.instances.values():
                    if instance.pgid is not None:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(instance.pgid, signal.SIGKILL)
            await self.prober.close()
            with contextlib.suppress(Exception):  # the reaper below is the backstop
                await self.driver.close()
            self.logs.close()
            await self.reaper.stop()
            with contextlib.suppress(FileNotFoundError):
                self.run_file.unlink()
            with contextlib.suppress(OSError):
                self._systems.unregister(self.state_dir, os.getpid())
            self._state = "stopped"

    def _clean_stale_run(self) -> None:
        previous = _runstate.read(self.run_file)
        if previous is None:
            return
        owner = _runstate.owner_alive(previous)
        if owner is not None:
            raise AlreadyRunningError(owner, str(self.state_dir))
        killed = _runstate.kill_leftovers(previous)
        pid = previous.get("pid")
        self.emit(StaleRunCleaned(pid if isinstance(pid, int) else 0, killed))
        with contextlib.suppress(FileNotFoundError):
            self.run_file.unlink()

    def _register(self) -> None:
        entry = RunningSystem(
            system=self._plan.system,
            manifest=str(self._manifest_path),
            state_dir=str(self.state_dir),
            pid=os.getpid(),
            create_time=self._create_time,
            started_at=self.started_at,
        )
        try:
            self._systems.register(entry)
        except OSError as exc:  # only `corral ls` misses it: no reason to refuse to run
            _log.warning("cannot record the system in %s: %s", self._systems.directory, exc)

    def _save_run_state(self) -> None:
        self._save_scheduled = False
        if self._state in ("stopped", "idle"):
            return
        instances = []
        for entry in self._services.values():
            for instance in entry.instances.values():
                if instance.pgid is None:
                    continue
                record = self.registry.snapshot().get(instance.id)
                instances.append(
                    {
                        "service": entry.name,
                        "instance": instance.id,
                        "pid": record.pid if record else instance.pgid,
                        "pgid": instance.pgid,
                        "port": instance.port,
                        "create_time": instance.create_time,
                    }
                )
        _runstate.write(
            self.run_file,
            {
                "pid": os.getpid(),
                "create_time": self._create_time,
                "system": self._plan.system,
                "started_at": self.started_at,
                "reaper_pid": self.reaper.pid,
                "instances": instances,
            },
        )


_NOT_READY_AFTER = "not ready after"


def startup_environment(
    plan: Plan, service: ServicePlan, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What an instance of ``service`` inherits and is given before any addon's variables
    or the run's addresses: where its start-up variables come from (the addons' and the
    run's are none of them), so which fork server it will fork from is known before the
    addons, or even the orchestrator, exist."""
    env = inherited_environment(
        os.environ if environ is None else environ,
        withheld=(),
        bytecode_cache=str(plan.state_dir / BYTECODE_CACHE),
    )
    env.update(
        instance_environment(
            plan,
            service,
            instance=instance_id(service.name, 0),
            port=0,
            endpoints=Endpoints(),
            database_url=None,
        )
    )
    return env


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error in ``group`` that is not a cancellation (the others' reaction)."""
    for inner in group.exceptions:
        if isinstance(inner, BaseExceptionGroup):
            inner = _first_error(inner)
        if not isinstance(inner, asyncio.CancelledError):
            return inner
    return group


def _first_start_error(exc: BaseException) -> StartError | None:
    if isinstance(exc, StartError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_start_error(inner)
            if found is not None:
                return found
    return None


__all__ = ["InstanceState", "Orchestrator", "startup_environment"]
