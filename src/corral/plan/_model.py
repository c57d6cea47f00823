"""The Plan: the resolved system every renderer and the runtime read.

Like Contour's DAG or Emissary's IR, it is rebuilt from scratch from a manifest and
never mutated. Frozen dataclasses, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from corral.manifest import Condition, DatabaseEngine, RestartPolicy
from corral.plan._events import EventsPlan
from corral.plan._gateway import GatewayPlan
from corral.plan._resilience import ResiliencePlan


class CheckKind(StrEnum):
    HTTP = "http"
    TCP = "tcp"
    COMMAND = "command"


@dataclass(frozen=True)
class CheckPlan:
    kind: CheckKind
    path: str | None = None
    """HTTP path (kind http)."""
    argv: tuple[str, ...] = ()
    """Command (kind command)."""
    period: float = 1.0
    timeout: float = 1.0
    failure_threshold: int = 3
    initial_delay: float = 0.0


@dataclass(frozen=True)
class RestartPlan:
    policy: RestartPolicy
    backoff_initial: float
    backoff_max: float
    backoff_multiplier: float
    reset_after: float


@dataclass(frozen=True)
class DatabasePlan:
    engine: DatabaseEngine
    name: str
    sqlite_path: Path | None = None
    """Where the SQLite file lives (engine sqlite)."""


class SecretSource(StrEnum):
    ENV = "env"
    FILE = "file"


@dataclass(frozen=True)
class SecretRef:
    """Where a secret's value comes from; the Plan never holds the value itself."""

    source: SecretSource
    name: str
    """The variable's name (source env) or the file's path (source file, absolute)."""

    def __str__(self) -> str:
        return f"{self.source}:{self.name}"


@dataclass(frozen=True)
class AutoscalePlan:
    """A service's autoscaling policy (see corral.autoscale, which applies it)."""

    min: int
    max: int
    metric: str
    """in_flight, p95, cpu or lag."""
    target: float
    """Per instance for in_flight, cpu (cores) and lag (messages); seconds for p95."""
    topic: str | None = None
    """The consumed topic whose waiting messages count (lag)."""
    up_stabilization: float = 0.0
    down_stabilization: float = 30.0
    up_cooldown: float = 5.0
    down_cooldown: float = 30.0


@dataclass(frozen=True)
class ServicePlan:
    """One service, resolved. Its configuration is two mappings, as a ConfigMap and a
    Secret: ``env`` (plain values, the manifest's with the environment overlay's merged
    over them) and ``secrets`` (references, resolved by the control plane at run time).
    Changes made at run time (``corral config set``) live in the config store, not here."""

    name: str
    argv: tuple[str, ...]
    workdir: Path
    replicas: int
    fixed_port: int | None
    env: Mapping[str, str]
    """The manifest's own variables for this service (not the contract's)."""
    readiness: CheckPlan | None
    liveness: CheckPlan | None
    startup: CheckPlan | None
    depends_on: Mapping[str, Condition]
    restart: RestartPlan
    stop_grace_period: float
    database: DatabasePlan
    cpu: float | None = None
    memory: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    app: str | None = None
    """module:attribute when the service is a corral.sdk app."""
    calls: tuple[str, ...] | None = None
    """Services this one declares calling synchronously (sorted); None: not declared."""
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)
    """Variables whose values are secrets, by where each value comes from."""
    autoscale: AutoscalePlan | None = None
    """Replicas follow load between its min and max; ``replicas`` is where it starts."""
    watch: tuple[str, ...] | None = None
    """The manifest's ``watch:`` patterns (relative to ``workdir``); None: the default."""


@dataclass(frozen=True)
class Plan:
    system: str
    root: Path
    """The manifest's folder; relative paths resolve against it."""
    state_dir: Path
    """Where the runtime keeps logs, databases and run state (``<root>/.corral``)."""
    services: Mapping[str, ServicePlan]
    start_order: tuple[str, ...]
    """Dependencies first; ties broken by name so the order is stable."""
    postgres_admin_url: str | None = None
    gateway: GatewayPlan | None = None
    events: EventsPlan | None = None
    resilience: ResiliencePlan | None = None
    runtime: str = "process"
    """``process``, ``docker`` or ``podman``: what runs the instances (``corral up``)."""
    telemetry_keep: float | None = None
    """Seconds the kept telemetry store holds (manifest ``telemetry.keep``)."""
    telemetry_max_bytes: int | None = None
    """Bytes it may take (manifest ``telemetry.max_size``)."""

    @property
    def stop_order(self) -> tuple[str, ...]:
        return tuple(reversed(self.start_order))

    def dependents(self, name: str) -> tuple[str, ...]:
        """Services that depend on ``name`` directly."""
        return tuple(s for s in self.start_order if name in self.services[s].depends_on)

    def callers(self, name: str) -> tuple[str, ...]:
        """Services that declare calling ``name`` (sorted)."""
        return tuple(sorted(s for s, p in self.services.items() if name in (p.calls or ())))


COMPONENT_BACKOFF_MAX = 5.0
COMPONENT_BACKOFF_MULTIPLIER = 2.0


def supervised_component(
    *,
    name: str,
    argv: tuple[str, ...],
    workdir: Path,
    port: int,
    readiness: CheckPlan,
    liveness: CheckPlan,
    backoff_initial: float,
    reset_after: float,
    stop_grace_period: float,
    database_name: str,
    labels: Mapping[str, str] | None = None,
) -> ServicePlan:
    """A binary Corral itself runs (Envoy, nats-server) as a supervised component: one
    replica whose checks answer on ``port``, no manifest env, dependencies or database,
    always restarted with backoff doubling up to five seconds."""
    return ServicePlan(
        name=name,
        argv=argv,
        workdir=workdir,
        replicas=1,
        fixed_port=port,
        env={},
        readiness=readiness,
        liveness=liveness,
        startup=None,
        depends_on={},
        restart=RestartPlan(
            policy=RestartPolicy.ALWAYS,
            backoff_initial=backoff_initial,
            backoff_max=COMPONENT_BACKOFF_MAX,
            backoff_multiplier=COMPONENT_BACKOFF_MULTIPLIER,
            reset_after=reset_after,
        ),
        stop_grace_period=stop_grace_period,
        database=DatabasePlan(engine=DatabaseEngine.NONE, name=database_name),
        labels=dict(labels or {}),
    )
