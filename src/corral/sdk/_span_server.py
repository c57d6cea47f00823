"""The request's server span, made at a fraction of the SDK's cost.

``Tracer.start_span`` plus four setters and ``end`` cost about 25 us of CPU per request
here (bench/sdk_export_breakdown.py): a sampler call, a ``BoundedAttributes`` and two
``BoundedList`` built per span, a lock taken per attribute, and on ``end`` a second,
read-only copy of the span for the processors. :class:`ServerSpans` builds the same
span (an SDK ``Span``: same ids, flags, sampling decision, resource, scope, processors)
without that work:

- the sampler is asked only when it is not the default ``ParentBased(ALWAYS_ON)``,
  whose answer is known (follow a valid parent's sampled flag, else sample);
- attributes start as a plain dict the middleware fills directly; the first
  ``set_attribute`` from user code turns it into the SDK's ``BoundedAttributes``, so
  their values are checked and limited as always (events and links likewise);
- ``end`` hands the processors the span itself: once ended it refuses every change
  (the SDK's own guards), so no copy is needed.

Spans made anywhere else (client calls, events, users' own) are the SDK's, unchanged.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Span, Tracer, sampling
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    DEFAULT_TRACE_STATE,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util import types

__all__ = ["ServerSpan", "ServerSpans"]

_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)
_getrandbits = random.getrandbits
_time_ns = time.time_ns
_new_lock = threading.Lock


class ServerSpan(Span):
    """An SDK span whose attribute, event and link containers are made when first used."""

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        self._bounded()
        super().set_attribute(key, value)

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        self._bounded()
        super().set_attributes(attributes)

    def _bounded(self) -> None:
        if self._attributes.__class__ is dict and self._end_time is None:
            self._attributes = BoundedAttributes(
                self._limits.max_span_attributes,
                self._attributes,
                immutable=False,
                max_value_len=self._limits.max_span_attribute_length,
            )

    def _add_event(self, event: Any) -> None:
        if self._events.__class__ is tuple:
            self._events = self._new_events()  # type: ignore[no-untyped-call]
        super()._add_event(event)

    def _add_link(self, link: trace.Link) -> None:
        if self._links.__class__ is tuple:
            self._links = self._new_links(())
        super()._add_link(link)

    def finish(self, name: str, method: str, route: str, status_code: int) -> None:
        """The middleware's last word: name, HTTP attributes, error status, end."""
        if self._end_time is not None:
            return
        self._name = name
        attributes = self._attributes
        if attributes.__class__ is dict:
            attributes["http.request.method"] = method
            attributes["http.route"] = route
            attributes["http.response.status_code"] = status_code
        else:
            self.set_attributes(
                {
                    "http.request.method": method,
                    "http.route": route,
                    "http.response.status_code": status_code,
                }
            )
        if status_code >= 500 and self._status.status_code is StatusCode.UNSET:
            self._status = _ERROR
        self.end()

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            super().end(end_time)  # the SDK's warning
            return
        self._end_time = end_time if end_time is not None else _time_ns()
        if self._attributes.__class__ is BoundedAttributes:
            self._attributes._immutable = True
        processor = self._span_processor
        processor._on_ending(self)
        processor.on_end(self)


class ServerSpans:
    """Makes :class:`ServerSpan` s with what ``tracer`` (an SDK tracer) would use."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self._sampler = tracer.sampler
        self._default_sampler = tracer.sampler is sampling.DEFAULT_ON
        self._random_ids = type(tracer.id_generator) is RandomIdGenerator
        self._random_flag = tracer.id_generator.is_trace_id_random()
        self._resource = tracer.resource
        self._processor = tracer.span_processor
        self._limits = tracer._span_limits
        self._scope = tracer._instrumentation_scope
        self._info = tracer.instrumentation_info

    def start(self, name: str, parent: otel_context.Context | None) -> trace.Span:
        """A server span named ``name``, child of the span in ``parent`` if it holds a
        valid one (an incoming traceparent), else the root of a new trace."""
        parent_ctx: SpanContext | None = (
            trace.get_current_span(parent).get_span_context() if parent is not None else None
        )
        if parent_ctx is not None and not parent_ctx.is_valid:
            parent_ctx = None
        ids = self._tracer.id_generator
        if parent_ctx is None:
            trace_id = _getrandbits(128) if self._random_ids else ids.generate_trace_id()
            random_flag = self._random_flag
        else:
            trace_id = parent_ctx.trace_id
            random_flag = parent_ctx.trace_flags.random_trace_id
        attributes: dict[str, Any] = {}
        if self._default_sampler:
            sampled = parent_ctx is None or parent_ctx.trace_flags.sampled
            state = DEFAULT_TRACE_STATE if parent_ctx is None else parent_ctx.trace_state
            recording = sampled
        else:
            result = self._sampler.should_sample(parent, trace_id, name, SpanKind.SERVER)
            sampled, recording = result.decision.is_sampled(), result.decision.is_recording()  # type: ignore[no-untyped-call]
            state = result.trace_state if result.trace_state is not None else DEFAULT_TRACE_STATE
            if result.attributes:
                attributes.update(result.attributes)
        flags = (TraceFlags.SAMPLED if sampled else 0) | (
            TraceFlags.RANDOM_TRACE_ID if random_flag else 0
        )
        span_id = _getrandbits(64) if self._random_ids else ids.generate_span_id()
        context = SpanContext(trace_id, span_id, False, TraceFlags(flags), state)
        if not recording:
            return trace.NonRecordingSpan(context)
        span = object.__new__(ServerSpan)
        # The fields Span.__init__ sets (see opentelemetry.sdk.trace.Span), cheaply.
        span._name = name
        span._context = context
        span._kind = SpanKind.SERVER
        span._instrumentation_info = self._info
        span._instrumentation_scope = self._scope
        span._parent = parent_ctx
        span._end_time = None
        span._attributes = attributes
        span._events = ()
        span._links = ()
        span._resource = self._resource
        span._status = _UNSET
        span._sampler = self._sampler
        span._trace_config = None
        span._record_exception = True
        span._set_status_on_exception = True
        span._span_processor = self._processor
        span._limits = self._limits
        span._lock = _new_lock()
        span._record_end_metrics = None
        span._start_time = _time_ns()
        self._processor.on_start(span, parent_context=parent)
        return span
