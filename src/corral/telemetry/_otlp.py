"""OTLP/HTTP trace requests (protobuf) -> plain span records.

What the SDK's exporter (``opentelemetry-exporter-otlp-proto-http``) sends is an
``ExportTraceServiceRequest``; the generated classes of ``opentelemetry-proto`` read it,
so nothing here parses protobuf by hand. Only the binary encoding is accepted, with or
without gzip: the exporter sends nothing else.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from corral.errors import CorralError

__all__ = [
    "MAX_BODY",
    "PROTOBUF",
    "OtlpError",
    "SpanRecord",
    "decode_spans",
    "export_response",
    "redacted",
]

PROTOBUF = "application/x-protobuf"
MAX_BODY = 16 * 1024 * 1024
"""Bytes a request may hold once decompressed (the exporter batches 512 spans at most)."""

_KINDS = {
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}
_STATUS = {
    Status.STATUS_CODE_UNSET: "unset",
    Status.STATUS_CODE_OK: "ok",
    Status.STATUS_CODE_ERROR: "error",
}


class OtlpError(CorralError, ValueError):
    """A request the receiver cannot read: ``status`` is the HTTP answer (400, 413, 415)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service: str
    instance: str | None
    start_ns: int
    end_ns: int
    status: str
    status_message: str
    attributes: dict[str, Any]
    events: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "kind": self.kind,
            "service": self.service,
            "instance": self.instance,
            "start": self.start_ns / 1e9,
            "end": self.end_ns / 1e9,
            "duration_ms": round((self.end_ns - self.start_ns) / 1e6, 3),
            "status": self.status,
            "status_message": self.status_message,
            "attributes": self.attributes,
            "events": list(self.events),
        }


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def _attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        out[pair.key] = _value(pair.value)
    return out


def _inflate(body: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        data = inflater.decompress(body, MAX_BODY + 1)
    except zlib.error as exc:
        raise OtlpError(400, f"the gzip body cannot be read: {exc}") from None
    if len(data) > MAX_BODY or inflater.unconsumed_tail:
        raise OtlpError(413, f"the request holds more than {MAX_BODY} bytes once decompressed")
    return data


def decode_spans(
    body: bytes, *, content_type: str | None, encoding: str | None
) -> list[SpanRecord]:
    """The spans of one export request. Raises :class:`OtlpError` for a body that is not
    an OTLP protobuf trace request (wrong media type, bad gzip, bad protobuf)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != PROTOBUF:
        raise OtlpError(415, f"OTLP/HTTP traces are sent as {PROTOBUF}, not {media or 'nothing'}")
    coding = (encoding or "identity").strip().lower()
    if coding == "gzip":
        body = _inflate(body)
    elif coding != "identity":
        raise OtlpError(415, f"unsupported content-encoding {coding!r} (gzip or none)")
    if len(body) > MAX_BODY:
        raise OtlpError(413, f"the request holds more than {MAX_BODY} bytes")
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpError(400, f"not an OTLP trace request: {exc}") from None
    spans: list[SpanRecord] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name") or "unknown")
        instance = resource.get("service.instance.id")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    continue  # invalid ids: nothing could link the span to its trace
                spans.append(
                    SpanRecord(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=_KINDS.get(span.kind, "internal"),
                        service=service,
                        instance=str(instance) if instance is not None else None,
                        start_ns=span.start_time_unix_nano,
                        end_ns=max(span.end_time_unix_nano, span.start_time_unix_nano),
                        status=_STATUS.get(span.status.code, "unset"),
                        status_message=span.status.message,
                        attributes=_attributes(span.attributes),
                        events=tuple(
                            {
                                "name": event.name,
                                "t": event.time_unix_nano / 1e9,
                                "attributes": _attributes(event.attributes),
                            }
                            for event in span.events
                        ),
                    )
                )
    return spans


def redacted(span: SpanRecord, redact: Callable[[str], str]) -> SpanRecord:
    """``span`` with ``redact`` applied to every text it holds: its name, status message,
    attributes and events (an exception's message and stack trace are event attributes),
    keys and values, however nested."""
    return replace(
        span,
        name=redact(span.name),
        service=redact(span.service),
        instance=None if span.instance is None else redact(span.instance),
        status_message=redact(span.status_message),
        attributes=_redact(span.attributes, redact),
        events=tuple(_redact(event, redact) for event in span.events),
    )


def _redact(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redact(k, redact): _redact(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, redact) for v in value]
    return value


def export_response() -> bytes:
    """The success answer: an empty ``ExportTraceServiceResponse`` (nothing rejected)."""
    return bytes(ExportTraceServiceResponse().SerializeToString())
