"""The gateway's own spans: Envoy's OpenTelemetry tracer, sending OTLP/HTTP to a
receiver (the control plane's, under ``corral up``).

Without it a request Envoy answered itself (no route, rate limited, no healthy
upstream, a fault, a timeout) leaves no span anywhere; with it every request through the
gateway has a server span of ``corral-gateway``, and the services' spans become its
children (Envoy's tracer propagates W3C ``traceparent``). Pure: a bootstrap in, the same
bootstrap with tracing out, so the renderer and its goldens stay as they are when
tracing is off (exports, ``corral gateway validate``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from urllib.parse import urlsplit

from corral.gateway._envoy import T_HCM, Json

__all__ = ["OTLP_CLUSTER", "GatewayTracing", "with_tracing"]

OTLP_CLUSTER = "corral_otlp"
T_OTEL = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"


@dataclass(frozen=True)
class GatewayTracing:
    """Where the spans go: ``traces_url`` (``http://127.0.0.1:PORT/otlp/v1/traces``) and
    the headers that authenticate them (the receiver's ingest token)."""

    traces_url: str
    headers: tuple[tuple[str, str], ...] = ()
    service_name: str = "corral-gateway"
    sampling_percent: float = 100.0


def _cluster(tracing: GatewayTracing) -> Json:
    url = urlsplit(tracing.traces_url)
    if url.scheme != "http" or not url.hostname:
        raise ValueError(f"gateway traces go over plain HTTP to a local receiver, not {url!r}")
    return {
        "name": OTLP_CLUSTER,
        "type": "STATIC" if url.hostname[0].isdigit() else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": OTLP_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": url.hostname,
                                        "port_value": url.port or 80,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }


def _hcm_tracing(tracing: GatewayTracing) -> Json:
    return {
        "random_sampling": {"value": tracing.sampling_percent},
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": T_OTEL,
                "service_name": tracing.service_name,
                "http_service": {
                    "http_uri": {
                        "uri": tracing.traces_url,
                        "cluster": OTLP_CLUSTER,
                        "timeout": "2s",
                    },
                    "request_headers_to_add": [
                        {"header": {"key": key, "value": value}} for key, value in tracing.headers
                    ],
                },
            },
        },
    }


def with_tracing(bootstrap: Json, tracing: GatewayTracing | None) -> Json:
    """``bootstrap`` with the tracer on every HTTP connection manager of its static
    listeners and the receiver's cluster added; ``bootstrap`` itself when ``None``."""
    if tracing is None:
        return bootstrap
    out = copy.deepcopy(bootstrap)
    static = out["static_resources"]
    for listener in static.get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                config = network_filter.get("typed_config", {})
                if config.get("@type") == T_HCM and config.get("stat_prefix") == "gateway":
                    config["tracing"] = _hcm_tracing(tracing)
    static.setdefault("clusters", []).append(_cluster(tracing))
    return out
