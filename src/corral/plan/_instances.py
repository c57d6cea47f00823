"""Instances and their environment, following the runtime contract. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from corral import contract
from corral.plan._model import Plan, ServicePlan
from corral.plan._resilience import resilience_environment


def instance_id(service: str, ordinal: int) -> str:
    """``web`` and 3 -> ``web-3``. Ordinals start at 1 and are never reused in a run."""
    return f"{service}-{ordinal}"


@dataclass(frozen=True)
class Endpoints:
    """System-wide addresses the runtime knows only once it runs (brokers, registry)."""

    host: str = "127.0.0.1"
    nats_url: str | None = None
    discovery: str | None = None
    discovery_token: str | None = None
    otel_endpoint: str | None = None
    service_urls: Mapping[str, str] = field(default_factory=dict)
    """Fixed base URLs per service, given as CORRAL_URL_<SERVICE> to every instance."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Per-service extras computed by other parts (events, resilience) as contract vars."""


def instance_environment(
    plan: Plan,
    service: ServicePlan,
    *,
    instance: str,
    port: int,
    endpoints: Endpoints,
    database_url: str | None,
) -> dict[str, str]:
    """The variables an instance gets on top of the inherited environment.

    The manifest's ``env`` comes first; the contract's own variables then win, except
    those a user may legitimately point elsewhere (database, bus, telemetry), which the
    manifest may override.
    """
    overridable: dict[str, str] = {contract.LOG_FORMAT: "json"}
    if database_url:
        overridable[contract.DATABASE_URL] = database_url
    if endpoints.nats_url:
        overridable[contract.NATS_URL] = endpoints.nats_url
    if endpoints.otel_endpoint:
        overridable[contract.OTEL_ENDPOINT] = endpoints.otel_endpoint
    overridable[contract.OTEL_SERVICE_NAME] = service.name
    for name, url in sorted(endpoints.service_urls.items()):
        overridable[contract.service_url_variable(name)] = url

    owned: dict[str, str] = {
        contract.SYSTEM: plan.system,
        contract.SERVICE: service.name,
        contract.INSTANCE: instance,
        contract.HOST: endpoints.host,
        contract.PORT: str(port),
        contract.GRACE_PERIOD: _seconds(service.stop_grace_period),
        # Service output goes to log files, not a terminal: don't let Python buffer it.
        "PYTHONUNBUFFERED": "1",
    }
    if endpoints.discovery:
        owned[contract.DISCOVERY] = endpoints.discovery
    if endpoints.discovery_token:
        owned[contract.DISCOVERY_TOKEN] = endpoints.discovery_token
    if service.calls is not None:
        owned[contract.CALLS] = ",".join(service.calls)
    owned.update(resilience_environment(plan, service.name))
    owned.update(endpoints.extra)
    # Reserved names the manifest checks already refuse; dropped here too, so a plan built
    # in code cannot shadow what the runtime's parts (the live configuration) hand out.
    own_env = {k: v for k, v in service.env.items() if k not in contract.RESERVED}
    return {**overridable, **own_env, **owned}


def _seconds(value: float) -> str:
    return f"{value:g}"
