"""The extension point through which system parts plug into the local runtime.

The gateway (Envoy), the broker (NATS) and later telemetry are *addons*: they start
before any service, may contribute environment variables to instances, get a say before
an instance is stopped (the gateway drains it first), and stop after every service.

Lifecycle, in this order (as Nameko documents its extensions'):

1. ``start(ctx)``     before any service starts, at the same time as the other
                      addons' (so it may not rely on another having started); may run
                      supervised components through ``ctx.run_component`` and waits
                      until they are ready.
2. ``environment(service)`` for every instance spawned afterwards.
3. ``before_instance_stop(record)`` before each instance receives SIGTERM.
4. ``stop()``         after every service has stopped; must never raise.

Every method has a do-nothing default, so an addon implements only what it needs.
The runtime never imports an addon; the control plane (``corral.control``) composes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from corral.plan import Plan, ServicePlan
from corral.runtime.registry import InstanceRecord, Registry


class RuntimeContext(Protocol):
    """What the runtime offers an addon."""

    @property
    def plan(self) -> Plan: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def state_dir(self) -> Path: ...

    def free_port(self) -> int:
        """A free TCP port on the loopback interface."""
        ...

    async def run_component(self, service: ServicePlan) -> None:
        """Supervise a system component (Envoy, nats-server) like any instance: its own
        process group, logs, checks and restarts. Returns once its instances are ready;
        raises :class:`corral.runtime.errors.StartError` if it cannot become ready."""
        ...


class Addon:
    """Base class with do-nothing defaults; subclasses override what they need."""

    name: str = "addon"

    async def start(self, ctx: RuntimeContext) -> None:
        """Before any service starts."""

    def environment(self, service: ServicePlan) -> dict[str, str]:
        """Extra contract variables for every instance of ``service``."""
        return {}

    async def before_instance_stop(self, record: InstanceRecord) -> None:
        """Before ``record`` receives SIGTERM (already marked draining in the registry)."""

    async def stop(self) -> None:
        """After every service stopped. Must not raise."""

    def status(self) -> dict[str, Any]:
        """Extra fields for ``corral status --json`` (e.g. ``gateway_url``)."""
        return {}
