"""The ``gateway:`` section: Envoy routes, auth, rate limits and per-service traffic policy.

Owned by the gateway work (issue 4); see docs/gateway.md for the reference. Shape::

    gateway:
      port: 8080                      # optional; a free port when omitted
      jwt:
        main:                         # provider name
          issuer: https://auth.local
          audiences: [ridehail]       # required: Envoy skips the check when empty
          jwks: {service: auth, path: /.well-known/jwks.json, cache: 30s}
          forward_claims: [sub, roles]
      routes:
        - match: {prefix: /rides, methods: [GET, POST]}
          service: rides
          rewrite: /
          auth: {jwt: main, roles: [rider]}
          rate_limit: {requests: 100, per: 1s, key: subject}
      services:
        rides: {load_balancing: least_request, outlier_detection: {consecutive_5xx: 3}}

Cross-section checks (unknown services, undefined providers) live in
:func:`check_gateway`, called from ``_checks.check_system``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from corral import contract
from corral.manifest._diagnostics import Diagnostic
from corral.manifest._references import closest_hint, service_hint
from corral.manifest._source import SourceMap
from corral.manifest._types import STRICT, Duration, MemoryBytes, Name, parse_methods

IDEMPOTENT_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PUT", "TRACE")
"""RFC 9110 idempotent methods: the only ones retried unless a route says otherwise."""

HTTP_METHODS = frozenset({*IDEMPOTENT_METHODS, "POST", "PATCH", "CONNECT"})

_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")


def _header_name(value: str) -> str:
    lowered = value.lower()
    if not _HEADER_NAME.match(lowered):
        raise ValueError(f"invalid header name {value!r}")
    return lowered


HeaderName = Annotated[str, BeforeValidator(lambda v: _header_name(v) if isinstance(v, str) else v)]


def _python_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


class HeaderMatchSpec(BaseModel):
    """How one request header must look: exactly one of exact, prefix, regex, present."""

    model_config = STRICT

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None
    present: bool | None = None

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return None if value is None else _python_regex(value)

    @model_validator(mode="after")
    def _one(self) -> Self:
        kinds = [k for k in ("exact", "prefix", "regex", "present") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a header match needs exactly one of exact, prefix, regex or present")
        return self


def _header_shorthand(value: Any) -> Any:
    """``x-tenant: blue`` is short for ``x-tenant: {exact: blue}``."""
    if isinstance(value, dict):
        return {k: ({"exact": v} if isinstance(v, str) else v) for k, v in value.items()}
    return value


class MatchSpec(BaseModel):
    """Which requests a route takes: one path rule plus optional host, methods, headers."""

    model_config = STRICT

    prefix: str | None = Field(default=None, description="Path prefix, on segment boundaries.")
    exact: str | None = Field(default=None, description="The whole path.")
    regex: str | None = Field(default=None, description="RE2 regular expression on the path.")
    host: str | None = Field(default=None, description="Host, or *.domain for any subdomain.")
    methods: tuple[str, ...] = Field(default=(), description="Allowed methods; all when empty.")
    headers: Annotated[dict[HeaderName, HeaderMatchSpec], BeforeValidator(_header_shorthand)] = (
        Field(default_factory=dict)
    )

    @field_validator("prefix", "exact")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"a path must start with '/', got {value!r}")
        if value is not None and any(c in value for c in "?#"):
            raise ValueError(f"a path may not contain '?' or '#', got {value!r}")
        return value

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return None if value is None else _python_regex(value)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(\*\.)?[A-Za-z0-9.-]+(:\d+)?$", value):
            raise ValueError(f"invalid host {value!r}: use a name such as api.example.com")
        return None if value is None else value.lower()

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> Any:
        return parse_methods(value, HTTP_METHODS)

    @model_validator(mode="after")
    def _one_path(self) -> Self:
        kinds = [k for k in ("prefix", "exact", "regex") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"a route matches one of prefix, exact or regex, not {kinds}")
        if not kinds:
            raise ValueError("a route needs one of prefix, exact or regex (use prefix: / for all)")
        return self


class RetryOn(StrEnum):
    SERVER_ERROR = "5xx"
    GATEWAY_ERROR = "gateway-error"
    CONNECT_FAILURE = "connect-failure"
    RESET = "reset"


class RetryBackoffSpec(BaseModel):
    model_config = STRICT

    base: Duration = Field(default=0.025, gt=0)
    max: Duration | None = Field(default=None, gt=0, description="Default: 10 x base.")


class RetrySpec(BaseModel):
    """Retry policy. Non-idempotent methods are retried only where the request never left
    (connect failure, reset before sending) unless retry_non_idempotent."""

    model_config = STRICT

    on: tuple[RetryOn, ...] = (RetryOn.CONNECT_FAILURE, RetryOn.RESET)
    retries: int = Field(default=2, ge=0, le=10)
    per_try_timeout: Duration | None = Field(default=None, gt=0)
    backoff: RetryBackoffSpec = RetryBackoffSpec()
    retry_non_idempotent: bool = False


class JwtAuthSpec(BaseModel):
    """A valid JWT from ``jwt`` (a provider name) is required; optionally roles and claims."""

    model_config = STRICT

    jwt: Name | None = Field(default=None, description="Provider; default: the only one.")
    roles: tuple[str, ...] = Field(default=(), description="The token needs one of these.")
    claims: dict[str, str] = Field(default_factory=dict, description="Claims that must match.")


def _auth_shorthand(value: Any) -> Any:
    """``auth: public`` / ``auth: jwt`` / ``auth: {jwt: main, roles: [admin]}``."""
    if value == "jwt":
        return {}
    return value


Auth = Literal["public"] | Annotated[JwtAuthSpec, BeforeValidator(_auth_shorthand)]


class RateLimitKey(StrEnum):
    ROUTE = "route"
    SUBJECT = "subject"
    CLIENT = "client"


class RateLimitSpec(BaseModel):
    """A token bucket: ``requests`` per ``per``, shared or one per subject / client."""

    model_config = STRICT

    requests: int = Field(ge=1)
    per: Duration = Field(default=1.0, ge=0.05)
    key: RateLimitKey = Field(
        default=RateLimitKey.CLIENT,
        description="route: one bucket; subject: per JWT sub; client: per client address.",
    )


class CorsSpec(BaseModel):
    model_config = STRICT

    origins: tuple[str, ...] = Field(min_length=1, description="Exact origins, or '*'.")
    methods: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    headers: tuple[str, ...] = ("authorization", "content-type")
    expose_headers: tuple[str, ...] = ()
    max_age: Duration = 600.0
    credentials: bool = False


class HeaderRulesSpec(BaseModel):
    model_config = STRICT

    set: dict[HeaderName, str] = Field(default_factory=dict)
    remove: tuple[HeaderName, ...] = ()


@dataclass(frozen=True)
class InternalEndpoint:
    """Paths of a service that are for its operators and the platform, not its users:
    the gateway forwards none of them unless a route names the endpoint in ``expose``."""

    name: str
    """As written in ``expose``."""
    paths: tuple[str, ...]
    below: bool = False
    """Also every path under each of ``paths`` (``/corral/circuits`` under ``/corral``)."""

    def covers(self, path: str) -> bool:
        """Whether an upstream path (no query string) is this endpoint's; a trailing
        slash counts (a web framework redirects it to the path)."""
        for own in self.paths:
            if path in (own, own + "/") or (self.below and path.startswith(own + "/")):
                return True
        return False


INTERNAL_ENDPOINTS: dict[str, InternalEndpoint] = {
    e.name: e
    for e in (
        # /corral/circuits (contract.CIRCUITS_PATH) and whatever the SDK adds under /corral
        InternalEndpoint("/corral", ("/corral",), below=True),
        InternalEndpoint("/docs", ("/docs", "/docs/oauth2-redirect")),  # FastAPI's Swagger UI
        InternalEndpoint(contract.LIVENESS_PATH, (contract.LIVENESS_PATH,)),
        InternalEndpoint(contract.METRICS_PATH, (contract.METRICS_PATH,)),
        InternalEndpoint("/openapi.json", ("/openapi.json",)),
        InternalEndpoint(contract.READINESS_PATH, (contract.READINESS_PATH,)),
        InternalEndpoint("/redoc", ("/redoc",)),
    )
}
"""What every SDK service serves besides its routes: metrics, health checks, the
circuit-breaker state, and FastAPI's API documentation. Sorted by name."""


def internal_endpoint(path: str) -> InternalEndpoint | None:
    """The internal endpoint an upstream path lands on, if any."""
    return next((e for e in INTERNAL_ENDPOINTS.values() if e.covers(path)), None)


class RouteSpec(BaseModel):
    """One route: which requests, to which service, under which policy."""

    model_config = STRICT

    match: MatchSpec
    service: Name
    rewrite: str | None = Field(
        default=None, description="Replace the matched prefix (or whole path) with this."
    )
    timeout: Duration = Field(default=15.0, ge=0, description="0 disables the timeout.")
    retry: RetrySpec | None = Field(default=None, description="Default: connect-failure/reset.")
    auth: Auth | None = None
    rate_limit: RateLimitSpec | None = None
    cors: CorsSpec | None = None
    request_headers: HeaderRulesSpec = HeaderRulesSpec()
    response_headers: HeaderRulesSpec = HeaderRulesSpec()
    websocket: bool = False
    max_body_size: MemoryBytes | None = Field(default=None, gt=0)
    expose: tuple[str, ...] = Field(
        default=(),
        description="Internal endpoints of the service this route may reach (/metrics, "
        "/docs, /openapi.json...); none by default.",
    )

    @field_validator("expose")
    @classmethod
    def _expose(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = list(INTERNAL_ENDPOINTS)
        for name in value:
            if name not in INTERNAL_ENDPOINTS:
                listing = "one of " + ", ".join(known)
                raise ValueError(
                    f"{name!r} is not an internal endpoint: {closest_hint(name, known, listing)}"
                )
        return tuple(sorted(set(value)))

    @field_validator("rewrite")
    @classmethod
    def _rewrite(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"a rewrite must start with '/', got {value!r}")
        return value


class JwksSpec(BaseModel):
    """Where a provider's keys come from: a service of the system, or a local file."""

    model_config = STRICT

    service: Name | None = None
    path: str = "/.well-known/jwks.json"
    file: str | None = Field(default=None, description="Relative to the manifest.")
    cache: Duration = Field(default=30.0, gt=0, description="How long fetched keys are kept.")

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.service is None) == (self.file is None):
            raise ValueError("jwks needs exactly one of 'service' or 'file'")
        if not self.path.startswith("/"):
            raise ValueError(f"jwks path must start with '/', got {self.path!r}")
        return self


class JwtProviderSpec(BaseModel):
    model_config = STRICT

    issuer: str = Field(min_length=1)
    audiences: tuple[str, ...] = Field(
        description="Required: a provider without audiences would accept any token."
    )
    jwks: JwksSpec
    forward_claims: tuple[str, ...] = Field(
        default=("sub",), description="Claims forwarded as x-corral-claim-<claim> headers."
    )
    roles_claim: str = "roles"
    clock_skew: Duration = Field(default=30.0, ge=0)

    @field_validator("audiences")
    @classmethod
    def _audiences(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(
                "a JWT provider needs at least one audience; without one any token from the "
                "issuer would be accepted for this system"
            )
        return value

    @field_validator("forward_claims")
    @classmethod
    def _claims(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for claim in value:
            if not _HEADER_NAME.match(claim.lower()):
                raise ValueError(f"claim {claim!r} cannot become a header name")
        return value


class LoadBalancing(StrEnum):
    ROUND_ROBIN = "round_robin"
    LEAST_REQUEST = "least_request"
    RING_HASH = "ring_hash"


class HealthCheckSpec(BaseModel):
    model_config = STRICT

    path: str = "/readyz"
    interval: Duration = Field(default=5.0, gt=0)
    timeout: Duration = Field(default=1.0, gt=0)
    unhealthy_threshold: int = Field(default=2, ge=1)
    healthy_threshold: int = Field(default=1, ge=1)


class OutlierDetectionSpec(BaseModel):
    model_config = STRICT

    consecutive_5xx: int = Field(default=5, ge=1)
    consecutive_gateway_failure: int = Field(default=3, ge=1)
    interval: Duration = Field(default=1.0, gt=0)
    base_ejection_time: Duration = Field(default=5.0, gt=0)
    max_ejection_percent: int = Field(default=50, ge=0, le=100)


class CircuitBreakerSpec(BaseModel):
    model_config = STRICT

    max_connections: int = Field(default=1024, ge=1)
    max_pending_requests: int = Field(default=1024, ge=1)
    max_requests: int = Field(default=1024, ge=1)
    max_retries: int = Field(default=3, ge=0)


class RetryBudgetSpec(BaseModel):
    model_config = STRICT

    percent: float = Field(default=20.0, gt=0, le=100)
    min_concurrency: int = Field(default=3, ge=1)


class TargetSpec(BaseModel):
    """Traffic policy towards one service (an Envoy cluster)."""

    model_config = STRICT

    load_balancing: LoadBalancing = LoadBalancing.ROUND_ROBIN
    hash_header: HeaderName | None = Field(default=None, description="For ring_hash.")
    health_check: HealthCheckSpec | None = None
    outlier_detection: OutlierDetectionSpec | None = OutlierDetectionSpec()
    circuit_breaker: CircuitBreakerSpec = CircuitBreakerSpec()
    retry_budget: RetryBudgetSpec | None = None
    connect_timeout: Duration = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _hash(self) -> Self:
        if (self.load_balancing is LoadBalancing.RING_HASH) != (self.hash_header is not None):
            raise ValueError("ring_hash needs 'hash_header', and hash_header needs ring_hash")
        return self


class GatewaySpec(BaseModel):
    """The Envoy API gateway in front of the system."""

    model_config = STRICT

    port: int | None = Field(default=None, ge=1, le=65535, description="Free port if omitted.")
    address: str = Field(default="127.0.0.1", description="Listen address.")
    workers: int = Field(default=1, ge=1, le=64, description="Envoy worker threads.")
    max_body_size: MemoryBytes = Field(default=10 * 2**20, gt=0)
    jwt: dict[Name, JwtProviderSpec] = Field(default_factory=dict)
    routes: tuple[RouteSpec, ...] = ()
    services: dict[Name, TargetSpec] = Field(default_factory=dict)


def check_gateway(
    gateway: GatewaySpec | None, services: list[str], source: SourceMap
) -> list[Diagnostic]:
    """Cross-references of the gateway section: services and providers exist, auth is set."""
    if gateway is None:
        return []
    problems: list[Diagnostic] = []
    providers = sorted(gateway.jwt)

    def unknown_service(path: tuple[str | int, ...], name: str) -> None:
        hint = service_hint(name, services)
        problems.append(source.diagnostic(path, f"unknown service {name!r}", hint))

    for name, provider in sorted(gateway.jwt.items()):
        if provider.jwks.service is not None and provider.jwks.service not in services:
            unknown_service(("gateway", "jwt", name, "jwks", "service"), provider.jwks.service)
    for name in sorted(gateway.services):
        if name not in services:
            unknown_service(("gateway", "services", name), name)
    for index, route in enumerate(gateway.routes):
        base: tuple[str | int, ...] = ("gateway", "routes", index)
        if route.service not in services:
            unknown_service((*base, "service"), route.service)
        auth = route.auth
        if isinstance(auth, JwtAuthSpec):
            if auth.jwt is not None and auth.jwt not in gateway.jwt:
                hint = closest_hint(
                    auth.jwt,
                    providers,
                    f"providers: {', '.join(providers)}"
                    if providers
                    else "define it under gateway.jwt",
                )
                problems.append(
                    source.diagnostic(
                        (*base, "auth", "jwt"), f"undefined JWT provider {auth.jwt!r}", hint
                    )
                )
            elif auth.jwt is None and len(providers) != 1:
                problems.append(
                    source.diagnostic(
                        (*base, "auth"),
                        "JWT required but "
                        + ("no provider is defined" if not providers else "several are defined"),
                        "define one under gateway.jwt"
                        if not providers
                        else f"name one: auth: {{jwt: {providers[0]}}}",
                    )
                )
        elif auth is None and len(providers) > 1:
            problems.append(
                source.diagnostic(
                    base,
                    "route has no 'auth' and several JWT providers are defined",
                    "say auth: public, or auth: {jwt: <provider>}",
                )
            )
        keyed_by_subject = (
            route.rate_limit is not None and route.rate_limit.key is RateLimitKey.SUBJECT
        )
        if keyed_by_subject and (auth == "public" or (auth is None and not providers)):
            problems.append(
                source.diagnostic(
                    (*base, "rate_limit", "key"),
                    "rate limit keyed by JWT subject on a route without JWT auth",
                    "use key: client, or require a JWT on this route",
                )
            )
        hidden = _always_internal(route)
        if hidden is not None and hidden.name not in route.expose:
            problems.append(
                source.diagnostic(
                    base,
                    f"every request on this route reaches {hidden.name}, an internal endpoint "
                    f"of {route.service!r}, which the gateway does not forward",
                    f"to publish it, add expose: [{hidden.name}] to the route",
                )
            )
        if route.websocket and route.max_body_size is not None:
            problems.append(
                source.diagnostic(
                    (*base, "max_body_size"),
                    "max_body_size buffers the request and cannot apply to a WebSocket route",
                )
            )
    return problems


_BACKREFERENCE = re.compile(r"\\[0-9]")


def _always_internal(route: RouteSpec) -> InternalEndpoint | None:
    """The internal endpoint that every request the route takes is forwarded to, if one
    is (then nothing but that endpoint could ever pass)."""
    match, rewrite = route.match, route.rewrite
    if match.exact is not None:
        return internal_endpoint(rewrite if rewrite is not None else match.exact)
    if match.regex is not None:
        constant = rewrite is not None and not _BACKREFERENCE.search(rewrite)
        return internal_endpoint(rewrite) if constant and rewrite is not None else None
    assert match.prefix is not None
    base = rewrite if rewrite is not None else match.prefix
    # Under an endpoint that covers everything below it, whatever the rest of the path.
    found = internal_endpoint(base.rstrip("/") + "/x")
    return found if found is not None and found.below else None
