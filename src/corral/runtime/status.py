"""What a running system says about itself: typed, one definition for every side.

The orchestrator builds a :class:`SystemStatus`; the control plane adds its own parts
(API and dashboard URLs, experiments, open circuits); the API serves it as its response
model (so it is in the OpenAPI document at ``/docs``); the API client parses it back; the
CLI and the dashboard read its fields. A :class:`ServiceChange` is the answer to a change
of one service (scale, restart, start, stop).

Addons contribute fields through ``Addon.status()`` (a dict merged in). Those Corral's
own addons contribute are declared here, so every reader gets them typed; a field an
addon adds that is not declared is kept (``extra="allow"``) rather than lost.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from corral.runtime.registry import InstanceRecord
from corral.runtime.timeline import Phase

SystemState = Literal["idle", "starting", "running", "stopping", "stopped"]


class ServiceStatus(BaseModel):
    """One service (or system component) of the system."""

    replicas: int = Field(description="Desired instances (0: stopped).")
    ready: int = Field(description="Instances serving (ready and running).")
    instances: int = Field(description="Instances the registry holds, in any state.")
    component: bool = Field(description="A Corral component (gateway, broker), not a service.")
    depends_on: dict[str, str] = Field(default_factory=dict)
    port: int | None = Field(default=None, description="A fixed port, if the service has one.")


class OpenCircuit(BaseModel):
    """A circuit breaker that a caller reports open or half-open."""

    model_config = ConfigDict(extra="allow")

    service: str = Field(description="The calling service.")
    instance: str = Field(description="The calling instance.")
    target: str = Field(description="The service it calls.")
    state: str = Field(description="open or half-open.")
    retry_after: float | None = Field(
        default=None, description="Seconds until a probe call may go (open circuits)."
    )


class SystemStatus(BaseModel):
    """The system: services, instances, and the endpoints of its parts."""

    model_config = ConfigDict(extra="allow")

    system: str
    state: SystemState
    runtime: str = Field(
        default="process", description="What runs the instances: process, docker or podman."
    )
    pid: int = Field(description="The orchestrator's process.")
    manifest: str = Field(description="The manifest file the system runs from.")
    state_dir: str
    started_at: float | None = Field(description="Unix time `up` began.")
    registry_version: int
    services: dict[str, ServiceStatus]
    instances: list[InstanceRecord] = Field(description="Components included.")
    # The control plane's own parts.
    api_url: str | None = None
    dashboard_url: str | None = None
    open_circuits: list[OpenCircuit] = Field(default_factory=list)
    chaos: list[dict[str, Any]] = Field(
        default_factory=list, description="Active failure-injection experiments."
    )
    # Contributed by addons (absent parts: null).
    gateway_url: str | None = None
    gateway_metrics_url: str | None = None
    gateway_admin_socket: str | None = None
    nats_url: str | None = None
    nats_embedded: bool | None = None
    events_provisioning: dict[str, Any] | None = None
    telemetry: dict[str, Any] | None = None
    config_version: int | None = None
    config_runtime_values: int = 0
    addon_errors: dict[str, str] = Field(
        default_factory=dict, description="Addons whose status could not be read, and why."
    )
    startup: list[Phase] = Field(
        default_factory=list,
        description="Where the start's time went: seconds since the control plane's "
        "process began (corral.runtime.timeline).",
    )

    def service_instances(self, service: str) -> list[InstanceRecord]:
        return [record for record in self.instances if record.service == service]

    @property
    def user_instances(self) -> list[InstanceRecord]:
        """The services' instances, without Corral's own components."""
        return [record for record in self.instances if not record.component]


class ChangeAction(StrEnum):
    SCALED = "scaled"
    RESTARTED = "restarted"
    STARTED = "started"
    STOPPED = "stopped"
    UNCHANGED = "unchanged"
    """Nothing to do (``start`` of a running service)."""


class ServiceChange(BaseModel):
    """What a change of one service did, once it is done."""

    service: str
    action: ChangeAction
    detail: str = Field(description="One line for people.")
    replicas: int = Field(description="Desired instances now.")
    ready: int = Field(description="Instances serving now.")
    instances: list[InstanceRecord] = Field(description="The service's instances now.")

    @classmethod
    def of(
        cls, status: SystemStatus, service: str, action: ChangeAction, *, how: str | None = None
    ) -> ServiceChange:
        """The change, as ``status`` (read after it) shows the service; ``how``: a word
        on the way it was done (``rolling``)."""
        entry = status.services[service]
        detail = {
            ChangeAction.SCALED: f"{service} scaled to {entry.replicas}",
            ChangeAction.RESTARTED: f"{service} restarted",
            ChangeAction.STARTED: f"{service} started",
            ChangeAction.STOPPED: f"{service} stopped",
            ChangeAction.UNCHANGED: f"{service} is already running",
        }[action]
        if how:
            detail += f" ({how})"
        if entry.replicas:
            detail += f" ({entry.ready}/{entry.replicas} ready)"
        return cls(
            service=service,
            action=action,
            detail=detail,
            replicas=entry.replicas,
            ready=entry.ready,
            instances=status.service_instances(service),
        )


__all__ = [
    "ChangeAction",
    "OpenCircuit",
    "ServiceChange",
    "ServiceStatus",
    "SystemState",
    "SystemStatus",
]
