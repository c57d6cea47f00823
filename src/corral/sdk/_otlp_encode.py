"""Finished spans -> the bytes of an OTLP ``ExportTraceServiceRequest``, written directly.

Why by hand: the official encoder (``opentelemetry-exporter-otlp-proto-common``) builds
a tree of generated protobuf objects per span and then serializes it; measured here
that costs about 34 us of CPU per span (bench/sdk_export_breakdown.py), more than the
whole request it describes. The OTLP wire format is small and stable (varints and
length-delimited fields, field numbers fixed by the OTLP 1.x protos), so the bytes are
written straight from the span's fields, with the encodings of repeated attribute
pairs (method, route, status...) and of the resource and scope kept in small caches.
``otlp-proto`` (a Rust encoder on PyPI) was considered: it does not encode events or
links (its own TODO), and spans carry exceptions and resilience decisions as events.

Every text it writes (names, attribute keys and values, event names, status messages,
scope and resource attributes) goes through corral.sdk._secrets.redact while the SDK
knows a secret: redaction is part of encoding, so a repeated value is redacted once
and then found in the cache, where corral.sdk._span_redaction redacted every span's
every text again (about 9 us a span with three secrets).

Field for field it writes what the official encoder writes (same fields, same
defaults left out, same order), so a collector cannot tell the two apart;
tests/sdk/test_otlp_encode.py decodes both with ``opentelemetry-proto`` and compares,
for spans with events, links, status, trace state, every attribute value type, several
resources and scopes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind

from corral.sdk import _secrets
from corral.sdk._span_server import ServerSpan

__all__ = ["Group", "encode_request", "encode_span", "encode_spans", "group_of"]

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_U64 = (1 << 64) - 1


def _varint(value: int) -> bytes:
    value &= _U64  # negative int64s are written as their 10-byte two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Lengths of length-delimited fields below 16 KiB, looked up instead of computed.
_LENGTHS = [_varint(n) for n in range(1 << 14)]


def _length(size: int) -> bytes:
    return _LENGTHS[size] if size < 16384 else _varint(size)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    size = len(payload)
    return tag + (_LENGTHS[size] if size < 16384 else _varint(size)) + payload


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


# Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
_REQ_RESOURCE_SPANS = _tag(1, 2)
_RS_RESOURCE, _RS_SCOPE_SPANS, _RS_SCHEMA = _tag(1, 2), _tag(2, 2), _tag(3, 2)
_RES_ATTRS, _RES_DROPPED = _tag(1, 2), _tag(2, 0)
_SS_SCOPE, _SS_SPANS, _SS_SCHEMA = _tag(1, 2), _tag(2, 2), _tag(3, 2)
_SC_NAME, _SC_VERSION, _SC_ATTRS = _tag(1, 2), _tag(2, 2), _tag(3, 2)
_KV_KEY, _KV_VALUE = _tag(1, 2), _tag(2, 2)
_AV_STRING, _AV_BOOL, _AV_INT, _AV_DOUBLE = _tag(1, 2), _tag(2, 0), _tag(3, 0), _tag(4, 1)
_AV_ARRAY, _AV_KVLIST, _AV_BYTES = _tag(5, 2), _tag(6, 2), _tag(7, 2)
_LIST_VALUES = _tag(1, 2)  # ArrayValue.values and KeyValueList.values
_SP_TRACE_ID, _SP_SPAN_ID, _SP_STATE, _SP_PARENT = _tag(1, 2), _tag(2, 2), _tag(3, 2), _tag(4, 2)
_SP_NAME, _SP_KIND, _SP_START, _SP_END = _tag(5, 2), _tag(6, 0), _tag(7, 1), _tag(8, 1)
_SP_ATTRS, _SP_DROPPED_ATTRS, _SP_EVENTS = _tag(9, 2), _tag(10, 0), _tag(11, 2)
_SP_DROPPED_EVENTS, _SP_LINKS, _SP_DROPPED_LINKS = _tag(12, 0), _tag(13, 2), _tag(14, 0)
_SP_STATUS, _SP_FLAGS = _tag(15, 2), _tag(16, 5)
_EV_TIME, _EV_NAME, _EV_ATTRS, _EV_DROPPED = _tag(1, 1), _tag(2, 2), _tag(3, 2), _tag(4, 0)
_LK_TRACE_ID, _LK_SPAN_ID, _LK_ATTRS = _tag(1, 2), _tag(2, 2), _tag(4, 2)
_LK_DROPPED, _LK_FLAGS = _tag(5, 0), _tag(6, 5)
_ST_MESSAGE, _ST_CODE = _tag(2, 2), _tag(3, 0)

_TRACE_ID_PREFIX = _SP_TRACE_ID + b"\x10"
_SPAN_ID_PREFIX = _SP_SPAN_ID + b"\x08"
_PARENT_PREFIX = _SP_PARENT + b"\x08"
_KINDS = {
    SpanKind.INTERNAL: _SP_KIND + b"\x01",
    SpanKind.SERVER: _SP_KIND + b"\x02",
    SpanKind.CLIENT: _SP_KIND + b"\x03",
    SpanKind.PRODUCER: _SP_KIND + b"\x04",
    SpanKind.CONSUMER: _SP_KIND + b"\x05",
}
# SpanFlags: the context-has-is-remote bit always, is-remote when the parent is remote.
_FLAGS_LOCAL = _SP_FLAGS + _pack_fixed32(0x100)
_FLAGS_REMOTE = _SP_FLAGS + _pack_fixed32(0x300)
_EMPTY_STATUS = _field(_SP_STATUS, b"")


def _value(value: Any) -> bytes:
    """An ``AnyValue`` message's payload (the same type tests, in the same order, as the
    official ``_encode_value``)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _AV_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _field(_AV_STRING, _utf8(value))
    if isinstance(value, int):
        return _AV_INT + _varint(value)
    if isinstance(value, float):
        return _AV_DOUBLE + _pack_double(value)
    if isinstance(value, bytes):
        return _field(_AV_BYTES, value)
    if isinstance(value, Sequence):
        return _field(_AV_ARRAY, b"".join([_field(_LIST_VALUES, _value(v)) for v in value]))
    if isinstance(value, Mapping):
        pairs = [_field(_LIST_VALUES, _key_value(str(k), v)) for k, v in value.items()]
        return _field(_AV_KVLIST, b"".join(pairs))
    raise TypeError(f"invalid attribute value type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    return (_field(_KV_KEY, _utf8(key)) if key else b"") + _field(_KV_VALUE, _value(value))


# Encoded KeyValue messages of scalar attributes, keyed by (key, type, value): the type
# too, since True == 1 == 1.0 as dict keys. Cleared when full, so a high-cardinality
# attribute (an id) costs a miss, never unbounded memory.
_pairs: dict[tuple[str, type, Any], bytes] = {}
_PAIRS_MAX = 4096
_SCALARS = frozenset({str, int, bool, float})


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
    """One ``tag`` field per attribute (a pair whose value cannot be encoded is left out,
    as the official encoder does, which logs it)."""
    if not attributes:
        return []
    out = []
    pairs = _pairs
    for key, value in attributes.items():
        cls = value.__class__
        if cls in _SCALARS:
            cache_key = (key, cls, value)
            encoded = pairs.get(cache_key)
            if encoded is None:
                encoded = _field(tag, _key_value(key, value))
                if len(pairs) >= _PAIRS_MAX:
                    pairs.clear()
                pairs[cache_key] = encoded
            out.append(encoded)
            continue
        try:
            out.append(_field(tag, _key_value(key, value)))
        except TypeError:
            continue
    return out


# Span classes whose fields are read directly (the SDK's finished span, and the
# middleware's server span, handed to processors as it is).
_PLAIN = frozenset({ReadableSpan, ServerSpan})


def _span(span: ReadableSpan) -> bytes:
    if span.__class__ in _PLAIN:
        # The SDK's finished span: its fields read directly, not through properties that
        # copy them (a mapping proxy, tuples of events and links) on every read.
        context, parent, name = span._context, span._parent, span._name
        attributes: Any = span._attributes
        events: Sequence[Any] = span._events
        links: Sequence[Any] = span._links
        if attributes.__class__ is BoundedAttributes:
            dropped_attributes = attributes.dropped
            attributes = attributes._dict
        else:
            dropped_attributes = 0
        dropped_events = dropped_links = 0
        if events.__class__ is BoundedList:  # its deque: iterating it takes no lock
            dropped_events, events = events.dropped, events._dq  # type: ignore[attr-defined]
        if links.__class__ is BoundedList:
            dropped_links, links = links.dropped, links._dq  # type: ignore[attr-defined]
        kind, start, end, status = span._kind, span._start_time, span._end_time, span._status
    else:
        context, parent, name = span.context, span.parent, span.name
        attributes, events, links = span.attributes, span.events, span.links
        dropped_attributes = span.dropped_attributes
        dropped_events, dropped_links = span.dropped_events, span.dropped_links
        kind, start, end, status = span.kind, span.start_time, span.end_time, span.status
    assert context is not None
    parts = [
        _TRACE_ID_PREFIX + context.trace_id.to_bytes(16, "big"),
        _SPAN_ID_PREFIX + context.span_id.to_bytes(8, "big"),
    ]
    state = context.trace_state
    if state:
        parts.append(_field(_SP_STATE, ",".join(f"{k}={v}" for k, v in state.items()).encode()))
    if parent:
        parts.append(_PARENT_PREFIX + parent.span_id.to_bytes(8, "big"))
    if name:
        encoded_name = _names.get(name)
        if encoded_name is None:
            encoded_name = _field(_SP_NAME, _utf8(name))
            if len(_names) >= 1024:
                _names.clear()
            _names[name] = encoded_name
        parts.append(encoded_name)
    parts.append(_KINDS[kind])
    if start:
        parts.append(_SP_START + _pack_fixed64(start))
    if end:
        parts.append(_SP_END + _pack_fixed64(end))
    if attributes:
        parts += _attributes(_SP_ATTRS, attributes)
    if dropped_attributes:
        parts.append(_SP_DROPPED_ATTRS + _varint(dropped_attributes))
    for event in events:
        parts.append(_field(_SP_EVENTS, _event(event)))
    if dropped_events:
        parts.append(_SP_DROPPED_EVENTS + _varint(dropped_events))
    for link in links:
        parts.append(_field(_SP_LINKS, _link(link)))
    if dropped_links:
        parts.append(_SP_DROPPED_LINKS + _varint(dropped_links))
    code, description = status.status_code.value, status.description
    if code or description:
        payload = (_field(_ST_MESSAGE, _utf8(description)) if description else b"") + (
            _ST_CODE + _varint(code) if code else b""
        )
        parts.append(_field(_SP_STATUS, payload))
    else:
        parts.append(_EMPTY_STATUS)
    parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return b"".join(parts)


def _event(event: Any) -> bytes:
    parts = []
    if event.timestamp:
        parts.append(_EV_TIME + _pack_fixed64(event.timestamp))
    if event.name:
        parts.append(_field(_EV_NAME, _utf8(event.name)))
    parts += _attributes(_EV_ATTRS, event.attributes)
    if event.dropped_attributes:
        parts.append(_EV_DROPPED + _varint(event.dropped_attributes))
    return b"".join(parts)


def _link(link: Any) -> bytes:
    context = link.context
    parts = [
        _field(_LK_TRACE_ID, context.trace_id.to_bytes(16, "big")),
        _field(_LK_SPAN_ID, context.span_id.to_bytes(8, "big")),
        *_attributes(_LK_ATTRS, link.attributes),
    ]
    if link.dropped_attributes:
        parts.append(_LK_DROPPED + _varint(link.dropped_attributes))
    parts.append(_LK_FLAGS + _pack_fixed32(0x300 if context.is_remote else 0x100))
    return b"".join(parts)


# Keyed by identity (Resource's own hash serializes it to JSON on every call), holding
# the object so its id cannot be reused while cached.
_resources: dict[int, tuple[Resource, bytes]] = {}
_scopes: dict[int, tuple[InstrumentationScope | None, bytes]] = {}


def _resource(resource: Resource) -> bytes:
    """The ``resource`` field of a ResourceSpans (a few per process: cached)."""
    cached = _resources.get(id(resource))
    if cached is not None and cached[0] is resource:
        return cached[1]
    encoded = _field(_RS_RESOURCE, b"".join(_attributes(_RES_ATTRS, resource.attributes)))
    if len(_resources) >= 64:
        _resources.clear()
    _resources[id(resource)] = (resource, encoded)
    return encoded


def _scope(scope: InstrumentationScope | None) -> bytes:
    """The ``scope`` field of a ScopeSpans."""
    cached = _scopes.get(id(scope))
    if cached is not None and cached[0] is scope:
        return cached[1]
    payload = b""
    if scope is not None:
        payload = (
            (_field(_SC_NAME, _utf8(scope.name)) if scope.name else b"")
            + (_field(_SC_VERSION, _utf8(scope.version)) if scope.version else b"")
            + b"".join(_attributes(_SC_ATTRS, scope.attributes))
        )
    encoded = _field(_SS_SCOPE, payload)
    if len(_scopes) >= 256:
        _scopes.clear()
    _scopes[id(scope)] = (scope, encoded)
    return encoded


def _plain(text: str) -> bytes:
    return text.encode()


def _redacted(text: str) -> bytes:
    return _secrets.redact(text).encode()


_utf8 = _plain
"""How every text is written: redacted while the SDK knows a secret."""
_forms: tuple[tuple[str, str], ...] = ()
_forms_list: list[tuple[str, str]] | None = None
_names: dict[str, bytes] = {}


def _secrets_changed() -> None:
    """Clear what was encoded under other secrets. They are only ever added (a config
    push, say), so a new length tells a change."""
    global _utf8, _forms, _forms_list
    _forms_list = _secrets.SECRET_FORMS
    _forms = tuple(_forms_list)
    _pairs.clear()
    _names.clear()
    _resources.clear()
    _scopes.clear()
    _utf8 = _redacted if _forms else _plain


Group = tuple[Resource, InstrumentationScope | None]
"""Where a span is written: its resource and instrumentation scope."""
_groups: dict[tuple[int, int], Group] = {}


def group_of(span: ReadableSpan) -> Group:
    """The span's (resource, scope), one tuple for all the spans of a tracer."""
    resource, scope = span.resource, span.instrumentation_scope or None
    group = _groups.get((id(resource), id(scope)))
    if group is None or group[0] is not resource or group[1] is not scope:
        if len(_groups) >= 1024:  # tracers made per request: new scope objects each
            _groups.clear()
        group = _groups[id(resource), id(scope)] = (resource, scope)
    return group


def encode_span(span: ReadableSpan) -> bytes:
    """One span as the ``spans`` field of a ScopeSpans, for :func:`encode_request`."""
    forms = _secrets.SECRET_FORMS
    if forms is not _forms_list or len(forms) != len(_forms):
        _secrets_changed()
    return _field(_SS_SPANS, _span(span))


def encode_request(spans: Iterable[tuple[Group, bytes]]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` of spans encoded by
    :func:`encode_span`, grouped by resource, then instrumentation scope, in order of
    first appearance, as the official encoder groups them (by equality; by identity
    here: equal resources or scopes that are distinct objects are written as separate
    groups, the same data either way, and one tracer hands all its spans the same
    objects)."""
    grouped: dict[int, tuple[Resource, dict[int, tuple[Any, list[bytes]]]]] = {}
    for (resource, scope), encoded_span in spans:
        by_resource = grouped.get(id(resource))
        if by_resource is None:
            by_resource = grouped[id(resource)] = (resource, {})
        scoped = by_resource[1].get(id(scope))
        if scoped is None:
            scoped = by_resource[1][id(scope)] = (scope, [])
        scoped[1].append(encoded_span)
    out = []
    for resource, scopes in grouped.values():
        parts = [_resource(resource)]
        for scope, encoded in scopes.values():
            scope_spans = [_scope(scope), *encoded]
            if scope is not None and scope.schema_url:
                scope_spans.append(_field(_SS_SCHEMA, scope.schema_url.encode()))
            parts.append(_field(_RS_SCOPE_SPANS, b"".join(scope_spans)))
        if resource.schema_url:
            parts.append(_field(_RS_SCHEMA, resource.schema_url.encode()))
        out.append(_field(_REQ_RESOURCE_SPANS, b"".join(parts)))
    return b"".join(out)


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` for ``spans``."""
    return encode_request([(group_of(span), encode_span(span)) for span in spans])
