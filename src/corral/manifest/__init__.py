"""The manifest: Corral's user language (``corral.yaml``), its models and diagnostics.

Pure apart from :func:`load`, which reads one file. Everything downstream (the plan,
renderers, runtime) reads the validated :class:`Manifest`, never raw YAML.
"""

from corral.manifest._autoscale import AutoscaleSpec, AutoscaleTarget
from corral.manifest._checks import SHARED_DATABASE_RULE
from corral.manifest._diagnostics import Diagnostic, KeyPath, ManifestError, format_path
from corral.manifest._events import EVENT_PARTY_RULE, EventsSpec, Ordering, effective_delivery
from corral.manifest._gateway import (
    HTTP_METHODS,
    IDEMPOTENT_METHODS,
    INTERNAL_ENDPOINTS,
    CorsSpec,
    GatewaySpec,
    HeaderMatchSpec,
    HeaderRulesSpec,
    HealthCheckSpec,
    InternalEndpoint,
    JwtAuthSpec,
    LoadBalancing,
    OutlierDetectionSpec,
    RateLimitKey,
    RateLimitSpec,
    RetryBudgetSpec,
    RetryOn,
    RetrySpec,
    TargetSpec,
)

# Two circuit breakers by name: Envoy's per-cluster connection limits (gateway) and the
# SDK client's breaker (resilience); re-exported under names that say which.
from corral.manifest._gateway import CircuitBreakerSpec as GatewayCircuitBreakerSpec
from corral.manifest._load import DEFAULT_FILENAME, Manifest, load, parse, resolve_path
from corral.manifest._overlay import overlay_path
from corral.manifest._references import closest_hint
from corral.manifest._resilience import BulkheadSpec, PolicySpec, ResilienceSpec, RetriesSpec
from corral.manifest._resilience import CircuitBreakerSpec as ResilienceCircuitBreakerSpec
from corral.manifest._secrets import SecretRefSpec
from corral.manifest._service import (
    BackoffSpec,
    CheckSpec,
    Condition,
    DatabaseEngine,
    DatabaseSpec,
    ResourcesSpec,
    RestartPolicy,
    RestartSpec,
    ServiceSpec,
)
from corral.manifest._source import SourceMap, parse_yaml
from corral.manifest._system import DatabasesSpec, PostgresSpec, SystemSpec
from corral.manifest._translate import translate
from corral.manifest._types import check_env_name, parse_duration

__all__ = [
    "DEFAULT_FILENAME",
    "EVENT_PARTY_RULE",
    "HTTP_METHODS",
    "IDEMPOTENT_METHODS",
    "INTERNAL_ENDPOINTS",
    "SHARED_DATABASE_RULE",
    "AutoscaleSpec",
    "AutoscaleTarget",
    "BackoffSpec",
    "BulkheadSpec",
    "CheckSpec",
    "Condition",
    "CorsSpec",
    "DatabaseEngine",
    "DatabaseSpec",
    "DatabasesSpec",
    "Diagnostic",
    "EventsSpec",
    "GatewayCircuitBreakerSpec",
    "GatewaySpec",
    "HeaderMatchSpec",
    "HeaderRulesSpec",
    "HealthCheckSpec",
    "InternalEndpoint",
    "JwtAuthSpec",
    "KeyPath",
    "LoadBalancing",
    "Manifest",
    "ManifestError",
    "Ordering",
    "OutlierDetectionSpec",
    "PolicySpec",
    "PostgresSpec",
    "RateLimitKey",
    "RateLimitSpec",
    "ResilienceCircuitBreakerSpec",
    "ResilienceSpec",
    "ResourcesSpec",
    "RestartPolicy",
    "RestartSpec",
    "RetriesSpec",
    "RetryBudgetSpec",
    "RetryOn",
    "RetrySpec",
    "SecretRefSpec",
    "ServiceSpec",
    "SourceMap",
    "SystemSpec",
    "TargetSpec",
    "check_env_name",
    "closest_hint",
    "effective_delivery",
    "format_path",
    "load",
    "overlay_path",
    "parse",
    "parse_duration",
    "parse_yaml",
    "resolve_path",
    "translate",
]
