"""The API gateway: Envoy as data plane, Corral as its control plane.

- a pure renderer (:func:`render`): GatewayPlan + registry Snapshot -> Envoy config
  dicts, stably sorted; self-contained variants for Envoy's validator
  (:func:`render_static`) and for containers (:func:`render_dns`);
- delivery through file-based xDS (:class:`XdsWriter`: temp file, then atomic rename);
- :class:`GatewayAddon`, which runs Envoy under the runtime's supervision and follows
  the registry;
- :func:`validate_gateway` (``envoy --mode validate``, mapped to manifest lines) and
  :func:`live_routes` (the route table Envoy serves now).

See docs/gateway.md.
"""

from corral.gateway._addon import COMPONENT_NAME, GatewayAddon, envoy_component
from corral.gateway._admin import AdminClient, live_routes
from corral.gateway._deliver import XdsWriter
from corral.gateway._dns import DnsTarget, render_dns
from corral.gateway._envoy import canonical
from corral.gateway._errors import EnvoyNotFoundError, GatewayError, GatewayTimeoutError
from corral.gateway._faults import Fault
from corral.gateway._render import (
    GatewayConfig,
    Layout,
    Ports,
    render,
    render_endpoints,
    route_names,
)
from corral.gateway._static import render_static
from corral.gateway._tracing import GatewayTracing, with_tracing
from corral.gateway._validate import (
    ValidationResult,
    envoy_binary,
    validate_config,
    validate_gateway,
)

__all__ = [
    "COMPONENT_NAME",
    "AdminClient",
    "DnsTarget",
    "EnvoyNotFoundError",
    "Fault",
    "GatewayAddon",
    "GatewayConfig",
    "GatewayError",
    "GatewayTimeoutError",
    "GatewayTracing",
    "Layout",
    "Ports",
    "ValidationResult",
    "XdsWriter",
    "canonical",
    "envoy_binary",
    "envoy_component",
    "live_routes",
    "render",
    "render_dns",
    "render_endpoints",
    "render_static",
    "route_names",
    "validate_config",
    "validate_gateway",
    "with_tracing",
]
