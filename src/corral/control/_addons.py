"""Which addons a plan needs. The composition root: runtime never imports addons."""

from __future__ import annotations

from typing import Any

from corral.broker import BrokerAddon, dlq_purge, dlq_replay, dlq_show
from corral.gateway import GatewayAddon, GatewayTracing
from corral.plan import Plan
from corral.runtime.addon import Addon
from corral.telemetry import GATEWAY_SERVICE, TelemetryAddon


def addons_for(plan: Plan) -> list[Addon]:
    """Broker, gateway, telemetry (which scrapes both and reads the bus for the
    dashboard, through callables read once it runs; its bus sampler waits for the broker):
    they start together, and stop in reverse order."""
    # The broker addon decides for itself: an embedded server for an `events:` section,
    # an external one when NATS_URL is given, nothing otherwise.
    broker = BrokerAddon()
    addons: list[Addon] = [broker]
    gateway: GatewayAddon | None = None
    if plan.gateway is not None:
        gateway = GatewayAddon()
        addons.append(gateway)

    def gateway_metrics_url() -> str | None:
        return gateway.status().get("gateway_metrics_url") if gateway is not None else None

    async def event_bus() -> dict[str, Any] | None:
        # On the broker's kept connection: a dashboard polling this opens none.
        return await broker.overview()

    async def dead_letters(action: str, seq: int | None) -> Any:
        # The control user's URL (with credentials) the broker connected with.
        if broker.url is None:
            return None
        if action == "show":
            assert seq is not None
            return await dlq_show(broker.url, plan.system, seq)
        if action == "replay":
            return await dlq_replay(broker.url, plan.system, seq)
        return await dlq_purge(broker.url, plan.system)

    telemetry = TelemetryAddon(
        gateway_metrics_url=gateway_metrics_url, event_bus=event_bus, dead_letters=dead_letters
    )
    addons.append(telemetry)
    if gateway is not None:

        def gateway_tracing() -> GatewayTracing | None:
            # Envoy's own spans go where the services' go, with the same ingest token.
            receiver = telemetry.receiver_for_gateway()
            if receiver is None:
                return None
            url, authorization = receiver
            return GatewayTracing(url, (("authorization", authorization),), GATEWAY_SERVICE)

        gateway.tracing = gateway_tracing
    return addons
