"""Progress and lifecycle events the orchestrator emits (``on_event``), for people.

Small frozen dataclasses: the CLI turns them into spinners and lines, the control-plane
API can stream them (``to_json``). The registry, not these events, is the source of truth
of what runs; an event says what just happened.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RuntimeEvent:
    """Base of every event."""

    def to_json(self) -> dict[str, Any]:
        return {"event": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class StaleRunCleaned(RuntimeEvent):
    """A previous run's orchestrator had died; its leftover process groups were killed."""

    pid: int
    groups: tuple[int, ...]


@dataclass(frozen=True)
class ServiceStarting(RuntimeEvent):
    """A service's dependencies hold; its instances are being started."""

    service: str
    replicas: int
    component: bool = False


@dataclass(frozen=True)
class InstanceStarted(RuntimeEvent):
    """A process was spawned for an instance (first start or restart)."""

    service: str
    instance: str
    pid: int
    port: int


@dataclass(frozen=True)
class InstanceReady(RuntimeEvent):
    """An instance passed readiness; ``seconds`` since its process was spawned."""

    service: str
    instance: str
    seconds: float


@dataclass(frozen=True)
class ReadinessChanged(RuntimeEvent):
    """A running instance was taken out of traffic (or put back) by its readiness check."""

    service: str
    instance: str
    ready: bool
    message: str | None = None


@dataclass(frozen=True)
class ServiceReady(RuntimeEvent):
    """Every instance of a service is ready; ``seconds`` since the service started."""

    service: str
    seconds: float


@dataclass(frozen=True)
class SystemReady(RuntimeEvent):
    """``up`` finished: every service is ready."""

    seconds: float


@dataclass(frozen=True)
class InstanceExited(RuntimeEvent):
    """An instance's process ended. ``signal`` is set when a signal ended it."""

    service: str
    instance: str
    code: int | None
    signal: int | None
    expected: bool = False
    """True when the runtime stopped it on purpose (stop, scale down, restart)."""


@dataclass(frozen=True)
class InstanceRestarting(RuntimeEvent):
    """An instance will be restarted after ``delay`` seconds of backoff."""

    service: str
    instance: str
    delay: float
    crashloop: bool
    attempt: int
    """Consecutive crashes without staying up (1 for the first)."""


@dataclass(frozen=True)
class LivenessFailed(RuntimeEvent):
    """A liveness (or startup) check failed its threshold; the instance is replaced."""

    service: str
    instance: str
    message: str


@dataclass(frozen=True)
class StartFailed(RuntimeEvent):
    """An instance could not be started or become ready."""

    service: str
    instance: str | None
    reason: str


@dataclass(frozen=True)
class InstanceStopping(RuntimeEvent):
    """Graceful stop begun: draining, then SIGTERM."""

    service: str
    instance: str


@dataclass(frozen=True)
class InstanceStopped(RuntimeEvent):
    """Graceful stop done; ``killed`` when SIGKILL was needed after the grace period."""

    service: str
    instance: str
    killed: bool
    seconds: float


@dataclass(frozen=True)
class ServiceStopped(RuntimeEvent):
    """Every instance of a service has stopped."""

    service: str


@dataclass(frozen=True)
class AddonFailed(RuntimeEvent):
    """An addon hook raised or timed out; the runtime carried on."""

    addon: str
    hook: str
    message: str


__all__ = [
    "AddonFailed",
    "InstanceExited",
    "InstanceReady",
    "InstanceRestarting",
    "InstanceStarted",
    "InstanceStopped",
    "InstanceStopping",
    "LivenessFailed",
    "ReadinessChanged",
    "RuntimeEvent",
    "ServiceReady",
    "ServiceStarting",
    "ServiceStopped",
    "StaleRunCleaned",
    "StartFailed",
    "SystemReady",
]
