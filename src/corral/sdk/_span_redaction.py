"""Spans leave the process with every known secret redacted.

Log lines are redacted as rendered text; spans are structured, so each text they carry is
redacted on its way to the exporter: the name, attributes (strings and lists of strings),
events (a raised exception's ``exception.message`` and ``exception.stacktrace`` are event
attributes), links' attributes and the status description. A span holding no secret is
handed on untouched; one that does is copied (a finished span is read-only).

It wraps the exporter rather than being a span processor: a processor's ``on_end`` gets
the finished span and may not change it, and redacting in the batch thread keeps the
work off the request path.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status
from opentelemetry.util.types import Attributes, AttributeValue

from corral.sdk._secrets import SECRET_FORMS, redact

__all__ = ["RedactingSpanExporter", "redact_span"]


class RedactingSpanExporter(SpanExporter):
    """Hands ``exporter`` the spans with every registered secret redacted."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if SECRET_FORMS:
            spans = [redact_span(span) for span in spans]
        return self._exporter.export(spans)

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """``span`` itself when it holds no secret, else a copy with them redacted."""
    # Each property read once: they build a new view or tuple per read.
    old_attributes, old_events, old_links = span.attributes, span.events, span.links
    name = redact(span.name)
    attributes = _attributes(old_attributes)
    events = tuple(_event(e) for e in old_events)
    links = tuple(_link(link) for link in old_links)
    status = span.status
    description = redact(status.description) if status.description else status.description
    if (
        name == span.name
        and attributes is old_attributes
        and all(new is old for new, old in zip(events, old_events, strict=True))
        and all(new is old for new, old in zip(links, old_links, strict=True))
        and description == status.description
    ):
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=links,
        kind=span.kind,
        status=Status(status.status_code, description),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _value(value: AttributeValue) -> AttributeValue:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Sequence) and any(isinstance(v, str) for v in value):
        redacted = tuple(redact(v) if isinstance(v, str) else v for v in value)
        return value if redacted == tuple(value) else redacted
    return value


def _attributes(attributes: Attributes) -> Attributes:
    """The same mapping when nothing changed (so unchanged spans are not copied)."""
    if not attributes:
        return attributes
    changed = {}
    for key, value in attributes.items():
        new = _value(value)
        if new != value:
            changed[key] = new
    return {**attributes, **changed} if changed else attributes


def _event(event: Event) -> Event:
    old = event.attributes
    attributes = _attributes(old)
    name = redact(event.name)
    if attributes is old and name == event.name:
        return event
    return Event(name, attributes, event.timestamp)


def _link(link: Link) -> Link:
    old = link.attributes
    attributes = _attributes(old)
    return link if attributes is old else Link(link.context, attributes)
