"""Tracing: OpenTelemetry, W3C trace context in and out, OTLP/HTTP export only when asked.

Each service gets its own ``TracerProvider`` instead of the global one, so several
services in one test process do not share exporters. Spans are always recorded (their ids
go into every log line and outgoing call); they leave the process only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, so an unset endpoint means no exporter, no
background thread and no connection-refused warnings. Exported spans carry no known
secret (see corral.sdk._otlp_encode). What export costs, and why it is built as it is:
corral.sdk._span_server, corral.sdk._span_export, docs/observability.md "Tracing cost".
"""

from __future__ import annotations

from collections.abc import MutableMapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from corral import contract
from corral.sdk._context import request_id_var

__all__ = [
    "PROPAGATOR",
    "build_tracer_provider",
    "current_trace_id",
    "inject_trace_headers",
    "set_caller",
]

PROPAGATOR = TraceContextTextMapPropagator()
_caller: list[str] = []


def set_caller(service: str) -> None:
    """The name sent in the caller header of outgoing calls (the running service)."""
    _caller[:] = [service]


def build_tracer_provider(*, service: str, instance: str, endpoint: str | None) -> TracerProvider:
    resource = Resource.create({"service.name": service, "service.instance.id": instance})
    provider = TracerProvider(resource=resource)
    if endpoint:
        # Imported only when used: the exporter pulls in requests and protobuf.
        from corral.sdk._span_export import LeanOTLPSpanExporter, QueueSpanProcessor

        # The exporter reads OTEL_EXPORTER_OTLP_* itself and appends /v1/traces; it
        # redacts known secrets as it encodes.
        provider.add_span_processor(QueueSpanProcessor(LeanOTLPSpanExporter()))
    return provider


def inject_trace_headers(
    headers: MutableMapping[str, str] | None = None,
) -> MutableMapping[str, str]:
    """Add ``traceparent``/``tracestate``, the request id and the caller name to outgoing
    headers (returns the mapping, a new dict when none is given).

    ``httpx.get(url, headers=inject_trace_headers())``
    """
    carrier: MutableMapping[str, str] = {} if headers is None else headers
    PROPAGATOR.inject(carrier)
    request_id = request_id_var.get()
    if request_id is not None:
        carrier.setdefault(contract.REQUEST_ID_HEADER, request_id)
    if _caller:
        carrier.setdefault(contract.CALLER_HEADER, _caller[0])
    return carrier


def current_trace_id() -> str | None:
    """Hex trace id of the current span, if one is recording."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
