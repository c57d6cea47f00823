"""OpenTelemetry for events: W3C trace context in message headers, producer and
consumer spans (no NATS instrumentation exists on PyPI; this is it).

A publish opens a PRODUCER span and injects its context into the headers (and the
envelope); each delivery attempt opens a CONSUMER span whose parent is that context, so
retries are siblings under the producer. A dead-letter replay opens a span that is a
child of the original producer span and republishes with its own context.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
TRACEPARENT = "traceparent"

SYSTEM_ATTR = "messaging.system"
DESTINATION_ATTR = "messaging.destination.name"
MESSAGE_ID_ATTR = "messaging.message.id"
DELIVERY_COUNT_ATTR = "messaging.delivery.count"
CONSUMER_GROUP_ATTR = "messaging.consumer.group.name"


def inject(headers: dict[str, str], context: Context | None = None) -> None:
    """Write ``traceparent`` (and ``tracestate``) of the current span into ``headers``."""
    _PROPAGATOR.inject(headers, context=context)


def extract(headers: Mapping[str, str] | None) -> Context:
    return _PROPAGATOR.extract(headers or {})  # read only: no copy


def get_tracer(provider: trace.TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer("corral.sdk.events", tracer_provider=provider)
