"""Which addons a plan needs. The composition root: runtime never imports addons."""

from __future__ import annotations

from corral.gateway import GatewayAddon
from corral.plan import Plan
from corral.runtime.addon import Addon


def addons_for(plan: Plan) -> list[Addon]:
    """Broker first (services need NATS_URL at spawn), then the gateway."""
    addons: list[Addon] = []
    if plan.gateway is not None:
        addons.append(GatewayAddon())
    return addons
