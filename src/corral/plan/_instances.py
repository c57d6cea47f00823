"""Instances and their environment, following the runtime contract. Pure."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from corral import contract
from corral.plan._gateway import ProviderPlan
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
    identity = identity_environment(plan, service)
    if identity is not None:
        overridable[contract.IDENTITY] = identity
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


def identity_environment(plan: Plan, service: ServicePlan) -> str | None:
    """``CORRAL_IDENTITY``: the gateway's JWT providers, for services to verify the token
    a request carries themselves (a request may reach a service's port without passing
    the gateway). Every service gets all providers: a token one service forwards in a
    call is verified by the next. None without providers."""
    if plan.gateway is None or not plan.gateway.providers:
        return None
    providers = [_provider(plan, service, p) for p in plan.gateway.providers]
    return json.dumps({"providers": providers}, separators=(",", ":"))


def _provider(plan: Plan, service: ServicePlan, provider: ProviderPlan) -> dict[str, object]:
    jwks: dict[str, str] = (
        {"file": _from_workdir(plan, service, provider.jwks_file)}
        if provider.jwks_file is not None
        else {"service": provider.jwks_service or "", "path": provider.jwks_path}
    )
    return {
        "name": provider.name,
        "issuer": provider.issuer,
        "audiences": list(provider.audiences),
        # The gateway's pins: Envoy's jwt_authn takes these for a JWKS's key types.
        "algorithms": list(contract.JWT_ALGORITHMS),
        "jwks": jwks,
        "cache_s": provider.cache,
        # As the gateway renders it: Envoy reads 0 as its 60 s default, so 1 s at least.
        "clock_skew_s": float(max(1, math.ceil(provider.clock_skew))),
        "forward_claims": list(provider.forward_claims),
        "roles_claim": provider.roles_claim,
    }


def _from_workdir(plan: Plan, service: ServicePlan, path: Path) -> str:
    """A file of the system's folder as seen from the service's working directory, which
    holds under ``corral up`` and in the exported images alike (they copy the folder);
    a file elsewhere keeps its absolute path."""
    if not path.is_relative_to(plan.root):
        return str(path)
    return os.path.relpath(path, service.workdir)


def _seconds(value: float) -> str:
    return f"{value:g}"
