"""Which addons a plan needs. The composition root: runtime never imports addons."""

from __future__ import annotations

from corral.broker import BrokerAddon
from corral.gateway import GatewayAddon
from corral.plan import Plan
from corral.runtime.addon import Addon


def addons_for(plan: Plan) -> list[Addon]:
    """Broker first (services need NATS_URL at spawn), then the gateway."""
    # The broker addon decides for itself: an embedded server for an `events:` section,
    # an external one when NATS_URL is given, nothing otherwise.
    addons: list[Addon] = [BrokerAddon()]
    if plan.gateway is not None:
        addons.append(GatewayAddon())
    return addons
