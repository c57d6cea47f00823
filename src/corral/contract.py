"""The runtime contract: what the control plane tells a service instance, and where.

A service instance learns everything from its environment, so the same service runs
under ``corral up``, in a container and on Kubernetes. Both sides import the names from
here and nowhere else: the control plane (plan, runtime, exporters) when it builds an
instance's environment, the SDK when it reads it. This module imports nothing from
Corral and does no I/O.
"""

from __future__ import annotations

from typing import Final

# --- environment variables (control plane -> service) -------------------------------

SERVICE: Final = "CORRAL_SERVICE"
"""The service's name as written in the manifest."""

INSTANCE: Final = "CORRAL_INSTANCE"
"""This instance's id, unique within the system (``<service>-<n>``)."""

SYSTEM: Final = "CORRAL_SYSTEM"
"""The system's name (``name:`` in the manifest)."""

HOST: Final = "HOST"
PORT: Final = "PORT"
"""Where the instance listens."""

DATABASE_URL: Final = "DATABASE_URL"
"""This service's own database (SQLAlchemy URL)."""

NATS_URL: Final = "NATS_URL"
"""The event bus."""

DISCOVERY: Final = "CORRAL_DISCOVERY"
"""How to find other services: ``registry+http://127.0.0.1:PORT`` locally, ``dns`` on
Kubernetes, ``static`` (see :data:`SERVICE_URL_PREFIX`) elsewhere."""

DISCOVERY_TOKEN: Final = "CORRAL_DISCOVERY_TOKEN"  # noqa: S105 - a variable name, not a secret
"""Bearer token for the registry's read-only watch endpoint (local mode only)."""

SERVICE_URL_PREFIX: Final = "CORRAL_URL_"
"""``CORRAL_URL_<SERVICE>`` (upper case, ``-`` as ``_``) gives a fixed base URL for a
service; used by ``static`` discovery (Compose) and as an override in every mode."""

RESILIENCE: Final = "CORRAL_RESILIENCE"
"""JSON: resilience policies for this service's outgoing calls, per target service."""

CALLS: Final = "CORRAL_CALLS"
"""Comma-separated services this one declares calling (``calls:`` in the manifest; empty:
none). Unset when the manifest does not say: then no call counts as undeclared."""

EVENTS: Final = "CORRAL_EVENTS"
"""JSON: stream and consumer settings for this service's topics."""

GRACE_PERIOD: Final = "CORRAL_STOP_GRACE_PERIOD"
"""Seconds between SIGTERM and SIGKILL; the service drains within this window."""

LOG_FORMAT: Final = "CORRAL_LOG_FORMAT"
"""``json`` (default) or ``console``."""

OTEL_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTEL_SERVICE_NAME: Final = "OTEL_SERVICE_NAME"
"""OpenTelemetry: where traces go (unset means tracing export is off)."""

CONFIG_URL: Final = "CORRAL_CONFIG_URL"
"""Base URL of the control plane serving this service's live configuration (``corral
up``); unset where the environment is all the configuration there is (Kubernetes)."""

CONFIG_TOKEN: Final = "CORRAL_CONFIG_TOKEN"  # noqa: S105 - a variable name, not a secret
"""Bearer token for this service's configuration watch and reports; good for no other
service's configuration and for nothing else in the API."""

CONFIG_VERSION: Final = "CORRAL_CONFIG_VERSION"
"""The configuration version this instance's environment was made from."""

SECRET_VARIABLES: Final = "CORRAL_SECRET_VARIABLES"  # noqa: S105 - a variable name
"""Comma-separated names of this instance's variables that hold secrets (the manifest's
``secrets:``); the SDK redacts their values from every log line."""

IDENTITY: Final = "CORRAL_IDENTITY"
"""JSON: how this service verifies the identity a request carries, the same JWT providers
the gateway checks (``gateway.jwt`` in the manifest)::

    {"providers": [{"name": "main", "issuer": "https://auth.example.com",
                    "audiences": ["shop"], "algorithms": [...JWT_ALGORITHMS],
                    "jwks": {"service": "auth", "path": "/.well-known/jwks.json"},
                    "cache_s": 30, "clock_skew_s": 30,
                    "forward_claims": ["sub", "email"], "roles_claim": "roles"}]}

``jwks`` is one of ``{"service", "path"}`` (fetched through discovery), ``{"file"}`` or
``{"url"}``. Unset: the service verifies nothing and sees no caller identity (claim
headers are dropped). See docs/identity.md."""

JWT_ALGORITHMS: Final = (
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "PS256",
    "PS384",
    "PS512",
    "RS256",
    "RS384",
    "RS512",
)
"""The signature algorithms a token may use: the asymmetric ones Envoy's jwt_authn
accepts. Symmetric (HS*) tokens are refused, as is ``none``."""

CONFIG_VARIABLES: Final = (CONFIG_URL, CONFIG_TOKEN, CONFIG_VERSION, SECRET_VARIABLES)

ALL_VARIABLES: Final = (
    SERVICE,
    INSTANCE,
    SYSTEM,
    HOST,
    PORT,
    DATABASE_URL,
    NATS_URL,
    DISCOVERY,
    DISCOVERY_TOKEN,
    RESILIENCE,
    CALLS,
    EVENTS,
    GRACE_PERIOD,
    LOG_FORMAT,
    OTEL_ENDPOINT,
    OTEL_SERVICE_NAME,
    IDENTITY,
    *CONFIG_VARIABLES,
)

RESERVED: Final = frozenset(
    {SYSTEM, SERVICE, INSTANCE, HOST, PORT, GRACE_PERIOD, DISCOVERY, DISCOVERY_TOKEN}
    | set(CONFIG_VARIABLES)
)
"""Variables the control plane owns per instance; a manifest's ``env`` may not set them.
The others (DATABASE_URL, NATS_URL, OTEL_*, LOG_FORMAT, IDENTITY) a manifest may point
elsewhere."""

COMPONENT_PREFIX: Final = "corral-"
"""Names Corral's own supervised components carry (corral-gateway, corral-nats) in the
registry, logs and Envoy clusters; no service may be named so."""


# --- HTTP endpoints every SDK service serves -----------------------------------------

LIVENESS_PATH: Final = "/healthz"
"""200 while the process is alive and its event loop answers."""

READINESS_PATH: Final = "/readyz"
"""200 when the instance may receive traffic; 503 during start-up and after SIGTERM."""

METRICS_PATH: Final = "/metrics"
"""Prometheus text exposition."""

CIRCUITS_PATH: Final = "/corral/circuits"
"""JSON: the state of this instance's circuit breakers per target (for ``corral status``)."""

IDLE_KEEP_ALIVE_SECONDS: Final = 75
"""How long a service keeps an idle HTTP connection open. The side that sends requests
must close an idle connection first: a request sent on a connection just as the server
closes it is reset after it was sent, and a proxy answers that 503 and never retries a
POST. So the gateway drops idle upstream connections sooner (uvicorn's default, 5 s, was
shorter than Envoy's, 1 h; the SDK's aiohttp client drops them after 15 s)."""

# --- the control plane's endpoints a service calls ------------------------------------

CONFIG_WATCH_PATH: Final = "/v1/config/instances/{instance}/watch"
"""Server-sent events: the service's configuration now, then each change
(``?since=VERSION`` adds the configuration of that version as ``previous``)."""

CONFIG_REPORT_PATH: Final = "/v1/config/instances/{instance}/reports"
"""POST: what the instance did with a version (applied, restart, rejected)."""

CALL_FAULTS_WATCH_PATH: Final = "/v1/chaos/calls/watch"
"""Server-sent events (``?caller=SERVICE``, the discovery token): the caller-side faults
(``corral chaos calls``) on that service's calls now, then after each change."""

CHAOS_HEADER: Final = "x-corral-chaos"
"""On a response the SDK client made up for an injected fault: the experiment's id."""

# --- headers -------------------------------------------------------------------------

REQUEST_ID_HEADER: Final = "x-request-id"
DEADLINE_HEADER: Final = "x-corral-deadline"
"""Absolute deadline of the call chain, Unix time in seconds (float, as text)."""
CALLER_HEADER: Final = "x-corral-caller"
"""Name of the calling service."""
CLAIM_HEADER_PREFIX: Final = "x-corral-claim-"
"""The gateway forwards verified JWT claims as ``x-corral-claim-<claim>`` headers; it
strips any client-supplied header with this prefix first. A service trusts none of them:
it verifies the forwarded token itself and rewrites these headers from it (see
:data:`IDENTITY`)."""


def service_url_variable(service: str) -> str:
    """The variable holding a base URL: ``ride-matching`` -> ``CORRAL_URL_RIDE_MATCHING``."""
    return SERVICE_URL_PREFIX + service.upper().replace("-", "_")
