"""Resolved ``gateway:`` section (pure). See corral.manifest._gateway.

Defaults are filled in, provider references resolved, relative files made absolute and
every element carries the manifest key path it came from, so a problem found later (by
Envoy's validator, say) can be reported against the line that caused it. Routes keep the
manifest's order (first match wins, as the user wrote them); clusters and providers are
sorted by name so renders are stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corral.manifest import (
    CorsSpec,
    HeaderMatchSpec,
    HeaderRulesSpec,
    HealthCheckSpec,
    JwtAuthSpec,
    KeyPath,
    LoadBalancing,
    Manifest,
    OutlierDetectionSpec,
    RateLimitSpec,
    RetryBudgetSpec,
    RetrySpec,
    TargetSpec,
)
from corral.manifest import GatewayCircuitBreakerSpec as CircuitBreakerSpec

DEFAULT_RETRY = RetrySpec()
"""Idempotent requests are retried twice on connect failure or reset unless a route says."""


@dataclass(frozen=True)
class AuthPlan:
    """A valid JWT from ``provider`` is required, with one of ``roles`` and all ``claims``."""

    provider: str
    roles: tuple[str, ...] = ()
    claims: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RoutePlan:
    name: str
    """Unique, stable: ``<index>-<service>``; also the Envoy route name."""
    path: KeyPath
    service: str
    prefix: str | None
    exact: str | None
    regex: str | None
    host: str | None
    methods: tuple[str, ...]
    headers: tuple[tuple[str, HeaderMatchSpec], ...]
    rewrite: str | None
    timeout: float
    retry: RetrySpec
    auth: AuthPlan | None
    """None means public."""
    rate_limit: RateLimitSpec | None
    cors: CorsSpec | None
    request_headers: HeaderRulesSpec
    response_headers: HeaderRulesSpec
    websocket: bool
    max_body_size: int | None
    """None means unbuffered (WebSocket routes)."""
    expose: tuple[str, ...] = ()
    """Internal endpoints (manifest INTERNAL_ENDPOINTS names) the route may reach."""


@dataclass(frozen=True)
class ProviderPlan:
    name: str
    path: KeyPath
    issuer: str
    audiences: tuple[str, ...]
    jwks_service: str | None
    jwks_path: str
    jwks_file: Path | None
    cache: float
    forward_claims: tuple[str, ...]
    roles_claim: str
    clock_skew: float


@dataclass(frozen=True)
class ClusterPlan:
    """Traffic policy towards one service; the Envoy cluster is named after it."""

    name: str
    path: KeyPath
    load_balancing: LoadBalancing
    hash_header: str | None
    health_check: HealthCheckSpec | None
    outlier_detection: OutlierDetectionSpec | None
    circuit_breaker: CircuitBreakerSpec
    retry_budget: RetryBudgetSpec | None
    connect_timeout: float


@dataclass(frozen=True)
class GatewayPlan:
    port: int | None
    """Fixed listener port, or None for a free one chosen when the gateway starts."""
    address: str
    workers: int
    max_body_size: int
    providers: tuple[ProviderPlan, ...]
    routes: tuple[RoutePlan, ...]
    clusters: tuple[ClusterPlan, ...]
    system: str = "corral"

    def cluster(self, name: str) -> ClusterPlan:
        return next(c for c in self.clusters if c.name == name)

    def provider(self, name: str) -> ProviderPlan:
        return next(p for p in self.providers if p.name == name)


def resolve_gateway(manifest: Manifest) -> GatewayPlan | None:
    """The resolved section, or None when the manifest has none."""
    spec = manifest.spec.gateway
    if spec is None:
        return None
    providers = tuple(
        ProviderPlan(
            name=name,
            path=("gateway", "jwt", name),
            issuer=p.issuer,
            audiences=tuple(sorted(p.audiences)),
            jwks_service=p.jwks.service,
            jwks_path=p.jwks.path,
            jwks_file=(manifest.root / p.jwks.file) if p.jwks.file else None,
            cache=p.jwks.cache,
            forward_claims=tuple(sorted({*p.forward_claims, "sub"})),
            roles_claim=p.roles_claim,
            clock_skew=p.clock_skew,
        )
        for name, p in sorted(spec.jwt.items())
    )
    only = providers[0].name if len(providers) == 1 else None
    routes: list[RoutePlan] = []
    for index, route in enumerate(spec.routes):
        auth: AuthPlan | None = None
        if isinstance(route.auth, JwtAuthSpec) or (route.auth is None and only):
            given = route.auth if isinstance(route.auth, JwtAuthSpec) else JwtAuthSpec()
            auth = AuthPlan(
                provider=given.jwt or only or "",
                roles=tuple(sorted(set(given.roles))),
                claims=tuple(sorted(given.claims.items())),
            )
        match = route.match
        routes.append(
            RoutePlan(
                name=f"{index}-{route.service}",
                path=("gateway", "routes", index),
                service=route.service,
                prefix=match.prefix,
                exact=match.exact,
                regex=match.regex,
                host=match.host,
                methods=match.methods,
                headers=tuple(sorted(match.headers.items())),
                rewrite=route.rewrite,
                timeout=route.timeout,
                retry=route.retry or DEFAULT_RETRY,
                auth=auth,
                rate_limit=route.rate_limit,
                cors=route.cors,
                request_headers=route.request_headers,
                response_headers=route.response_headers,
                websocket=route.websocket,
                max_body_size=None
                if route.websocket
                else (route.max_body_size or spec.max_body_size),
                expose=route.expose,
            )
        )
    wanted = (
        {r.service for r in routes}
        | {p.jwks_service for p in providers if p.jwks_service}
        | set(spec.services)
    )
    clusters = tuple(
        _cluster(name, spec.services.get(name, TargetSpec())) for name in sorted(wanted)
    )
    return GatewayPlan(
        port=spec.port,
        address=spec.address,
        workers=spec.workers,
        max_body_size=spec.max_body_size,
        providers=providers,
        routes=tuple(routes),
        clusters=clusters,
        system=manifest.spec.name,
    )


def _cluster(name: str, target: TargetSpec) -> ClusterPlan:
    return ClusterPlan(
        name=name,
        path=("gateway", "services", name),
        load_balancing=target.load_balancing,
        hash_header=target.hash_header,
        health_check=target.health_check,
        outlier_detection=target.outlier_detection,
        circuit_breaker=target.circuit_breaker,
        retry_budget=target.retry_budget,
        connect_timeout=target.connect_timeout,
    )
