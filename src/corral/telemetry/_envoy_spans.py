"""Envoy's own spans, made to read like the services' (its OpenTelemetry tracer names
every server span ``ingress`` and tags it the Zipkin way).

A gateway span is renamed ``<method> <path>`` and its ``http.url`` loses the query
string (it may carry API keys or reset tokens: the gateway's access log drops it for
the same reason); a span Envoy tagged ``error`` (a 5xx, a reset, an abort it made
itself) gets the error status the dashboard and ``--status error`` look for.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

from corral.telemetry._otlp import SpanRecord

__all__ = ["readable_gateway_span"]


def readable_gateway_span(span: SpanRecord) -> SpanRecord:
    attributes = dict(span.attributes)
    url = attributes.get("http.url")
    path = None
    if isinstance(url, str):
        parts = urlsplit(url)
        attributes["http.url"] = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        path = parts.path or "/"
    method = attributes.get("http.method")
    name = f"{method} {path}" if method and path and span.name == "ingress" else span.name
    status = span.status
    if str(attributes.get("error", "")).lower() == "true" and status != "error":
        status = "error"
    return replace(span, name=name, attributes=attributes, status=status)
