"""Tiny vocabulary for Envoy config dicts: type URLs, durations, percentages. Pure."""

from __future__ import annotations

import hashlib
import json
from typing import Any

Json = dict[str, Any]

T_HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
T_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
T_JWT = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
T_JWT_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig"
T_RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
T_RBAC_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
T_RATELIMIT = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
T_CORS = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
T_CORS_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
T_BUFFER = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"
T_BUFFER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute"
T_MUTATION = "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
T_FAULT = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
T_STDOUT_LOG = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
T_CEL_FILTER = "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter"
T_CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
T_ROUTE_CONFIG = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
T_ENDPOINTS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
T_FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
X_HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
T_HTTP_PROTOCOL_OPTIONS = "type.googleapis.com/" + X_HTTP_PROTOCOL_OPTIONS
T_PREVIOUS_HOSTS = (
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
)

F_JWT = "envoy.filters.http.jwt_authn"
F_RBAC = "envoy.filters.http.rbac"
F_RATELIMIT = "envoy.filters.http.local_ratelimit"
F_CORS = "envoy.filters.http.cors"
F_BUFFER = "envoy.filters.http.buffer"
F_MUTATION = "envoy.filters.http.header_mutation"
F_FAULT = "envoy.filters.http.fault"
F_ROUTER = "envoy.filters.http.router"


def duration(seconds: float) -> str:
    """Seconds -> protobuf JSON duration (``0.025s``, ``15s``)."""
    text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    return f"{text or '0'}s"


def percent(value: float) -> Json:
    return {"numerator": round(value), "denominator": "HUNDRED"}


def runtime_percent(value: float, key: str) -> Json:
    return {"default_value": percent(value), "runtime_key": key}


def header_value(key: str, value: str) -> Json:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def canonical(data: Any) -> str:
    """The stable JSON text of a config object (sorted keys): what goes to disk and goldens."""
    return json.dumps(data, sort_keys=True, indent=2) + "\n"


def content_version(data: Any) -> str:
    """A version string derived from content, so equal configs carry equal versions."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def discovery_response(resources: list[Json], type_url: str) -> Json:
    """A file-based xDS document: Envoy reads a DiscoveryResponse from each watched file."""
    typed = [{"@type": type_url, **resource} for resource in resources]
    return {"version_info": content_version(typed), "resources": typed}
