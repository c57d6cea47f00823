"""Configuration as a runtime addon: its version is made before any service starts, and
every instance gets its secrets and its watch from it."""

from __future__ import annotations

from typing import Any

from corral.config._control import ConfigControl
from corral.plan import ServicePlan
from corral.runtime.addon import Addon, RuntimeContext


class ConfigAddon(Addon):
    name = "config"

    def __init__(self, control: ConfigControl) -> None:
        self.control = control

    async def start(self, ctx: RuntimeContext) -> None:
        await self.control.start()

    def environment(self, service: ServicePlan) -> dict[str, str]:
        return self.control.environment(service)

    def status(self) -> dict[str, Any]:
        current = self.control.current
        runtime = sum(len(s.overrides) for s in current.services.values())
        # Runtime values outlive `corral down`: say so where the operator looks first.
        return {"config_version": current.version, "config_runtime_values": runtime}
