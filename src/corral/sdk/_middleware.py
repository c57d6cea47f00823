"""The SDK's one pure-ASGI middleware: request id, trace context, deadline, metrics, access
log.

One middleware instead of four: they all need the same facts (route template, status,
duration, trace id) and one ``send`` wrapper per request costs less than four. Pure ASGI
because Starlette's ``BaseHTTPMiddleware`` costs 2-3x throughput. It is also the last
line for unhandled exceptions: it logs them with the request and trace ids and answers a
generic problem+json 500, so the server never prints a second, unstructured traceback.

It is the outermost layer of the app (:func:`wrap_stack`), outside the users' own
middleware, so their work is timed, logged and traced too, and it stands in for
Starlette's ``ServerErrorMiddleware``, which then only costs a layer per request.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.trace import Tracer
from opentelemetry.trace import (
    DEFAULT_TRACE_STATE,
    INVALID_SPAN,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral import contract
from corral.sdk import _logging
from corral.sdk._context import request_id_var
from corral.sdk._errors import PROBLEM_JSON, problem_body
from corral.sdk._logging import WRITER, access_line
from corral.sdk._metrics import UNMATCHED_ROUTE
from corral.sdk._span_server import ServerSpan, ServerSpans
from corral.sdk._tracing import PROPAGATOR
from corral.sdk.client._deadline import deadline_var, parse_deadline
from corral.sdk.identity._middleware import IdentityMiddleware

if TYPE_CHECKING:
    from corral.sdk._service import Service
    from corral.sdk.identity._verifier import TokenVerifier

__all__ = ["TelemetryMiddleware", "wrap_stack"]

_REQUEST_ID = contract.REQUEST_ID_HEADER.encode()
_DEADLINE = contract.DEADLINE_HEADER.encode()
_TRACE_HEADERS = (b"traceparent", b"tracestate")
_MAX_REQUEST_ID = 128
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_getrandbits = random.getrandbits
_perf_counter = time.perf_counter

# OTel keeps the current context in one ContextVar of its runtime context. Reading and
# setting that variable directly does what ``attach(set_span_in_context(span))`` and
# ``detach`` do without their six wrapper calls (0.3 us a request); any other runtime
# context (chosen with OTEL_PYTHON_CONTEXT) goes through the public functions.
_runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
_CURRENT_CONTEXT = (
    _runtime._current_context if type(_runtime) is ContextVarsRuntimeContext else None
)
# The key set_span_in_context stores the span under, learnt through the public API.
(_SPAN_KEY,) = trace.set_span_in_context(INVALID_SPAN, otel_context.Context())


def wrap_stack(
    build: Callable[[], ASGIApp],
    service: Service[Any],
    quiet_paths: frozenset[str],
    *,
    identity: Callable[[], TokenVerifier | None],
) -> ASGIApp:
    """The app's middleware stack (``build`` is FastAPI's builder) with
    :class:`TelemetryMiddleware` outermost, then :class:`IdentityMiddleware` (so a
    request's identity is settled before the users' middleware and handlers run, and
    its work is timed and traced), and :func:`answer_unhandled` installed unless the
    user's own handler for ``Exception``/500 (or debug mode) is to answer instead.

    Starlette's ``ServerErrorMiddleware`` (always on top of a FastAPI stack) would only
    wrap ``send`` once more per request: every exception reaching it has gone through
    this middleware, which answered it. It stays where it still has work: with a handler
    registered for ``Exception``/500 (it calls it, then this middleware logs) or in
    debug mode (the traceback page).
    """
    app = service.app
    stack = build()
    handlers = app.exception_handlers
    if not (app.debug or 500 in handlers or Exception in handlers):
        # Into the innermost layer's own table: FastAPI would route a handler for
        # Exception registered on the app out to ServerErrorMiddleware instead.
        layer: Any = stack
        while layer is not None and not isinstance(layer, ExceptionMiddleware):
            layer = getattr(layer, "app", None)
        if layer is not None:  # else a user's layer hides it: TelemetryMiddleware answers
            layer.add_exception_handler(Exception, answer_unhandled)
    if type(stack) is ServerErrorMiddleware and stack.handler is None and not stack.debug:
        stack = stack.app
    stack = IdentityMiddleware(stack, verifier=identity)
    return TelemetryMiddleware(stack, service=service, quiet_paths=quiet_paths)


class _NotingStart:
    """``send``, noting whether the response has started (then no 500 can follow)."""

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


UNHANDLED = "corral.unhandled"
"""Scope key under which :func:`answer_unhandled` hands an answered exception outwards."""


async def answer_unhandled(request: Request, exc: Exception) -> Response:
    """The problem+json 500 for an exception no handler took, answered where Starlette
    answers the handled ones: inside the users' middleware, so what they add to every
    response (CORS headers, say) is on it and ``call_next`` gets a response, not an
    exception. It costs nothing until something fails (a middleware layer would cost
    every request).

    The exception travels outwards in the scope to :class:`TelemetryMiddleware`, which
    logs it and records it on the span.
    """
    request.scope[UNHANDLED] = exc
    request_id = request_id_var.get()
    ids: dict[str, str] = {}
    if request_id is not None:  # not on probes, which telemetry leaves alone
        span_ctx = trace.get_current_span().get_span_context()
        ids = {"request_id": request_id, "trace_id": span_ctx.trace_id.to_bytes(16).hex()}
    return Response(_problem_500(request.scope, ids), 500, media_type=PROBLEM_JSON)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    if route is None:
        return UNMATCHED_ROUTE
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else UNMATCHED_ROUTE


def _valid_request_id(raw: bytes) -> str | None:
    # Echoed into logs and headers: accept only short printable ASCII.
    if 0 < len(raw) <= _MAX_REQUEST_ID and raw.isascii():
        text = raw.decode("ascii")
        if text.isprintable():
            return text
    return None


def _light_span(parent: otel_context.Context | None) -> trace.Span:
    """A non-recording span with fresh ids, for when spans are not exported.

    It carries the trace through logs and outgoing calls at a fraction of the cost of an
    SDK span (which would be built, timed and dropped); ids come from ``random`` as the
    SDK's own ``RandomIdGenerator`` does.
    """
    parent_ctx = trace.get_current_span(parent).get_span_context() if parent else None
    if parent_ctx is not None and parent_ctx.is_valid:
        trace_id, flags, state = parent_ctx.trace_id, parent_ctx.trace_flags, parent_ctx.trace_state
    else:
        trace_id, flags, state = _getrandbits(128), _SAMPLED, None
    span_id = _getrandbits(64)
    if trace_id == 0 or span_id == 0:  # invalid ids, vanishingly unlikely
        return INVALID_SPAN
    return NonRecordingSpan(_span_context(trace_id, span_id, flags, state))


def _checked_span_context(
    trace_id: int, span_id: int, flags: TraceFlags, state: TraceState | None
) -> SpanContext:
    # Positional arguments: keywords cost SpanContext.__new__ 0.25 us more.
    return SpanContext(trace_id, span_id, False, flags, state)


def _valid_span_context(
    trace_id: int, span_id: int, flags: TraceFlags, state: TraceState | None
) -> SpanContext:
    """``SpanContext(trace_id, span_id, False, flags, state)`` for ids known to be valid
    (from ``getrandbits`` or a valid parent), without its range checks: the tuple it
    would build, at a third of the cost. Used only if it builds the same tuple here."""
    return _new_tuple(
        SpanContext,
        (trace_id, span_id, False, flags, DEFAULT_TRACE_STATE if state is None else state, True),
    )


_new_tuple = tuple.__new__
_probe = (2**128 - 1, 2**64 - 1, _SAMPLED, None)
_span_context = (
    _valid_span_context
    if _valid_span_context(*_probe) == _checked_span_context(*_probe)
    and _valid_span_context(*_probe).is_valid
    else _checked_span_context
)


class TelemetryMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        service: Service[Any],
        quiet_paths: frozenset[str],
    ) -> None:
        self.app = app
        self.service = service
        self.quiet_paths = quiet_paths
        self._spans: tuple[trace.Tracer, ServerSpans | None] | None = None

    def _server_span(
        self, tracer: trace.Tracer, name: str, parent: otel_context.Context | None
    ) -> trace.Span:
        """The request's span, made by :class:`ServerSpans` for the SDK's tracer (a fifth
        of ``start_span``'s cost), by ``tracer`` itself for any other."""
        spans = self._spans
        if spans is None or spans[0] is not tracer:
            spans = self._spans = (tracer, ServerSpans(tracer) if type(tracer) is Tracer else None)
        factory = spans[1]
        if factory is None:
            return tracer.start_span(name, context=parent, kind=SpanKind.SERVER)
        return factory.start(name, parent)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.quiet_paths:
            # Probes and scrapes: no log line, span or metric (they would drown the rest).
            await self._quiet(scope, receive, send)
            return

        service = self.service
        request_id: str | None = None
        carrier: dict[str, str] | None = None
        deadline_raw: bytes | None = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                request_id = _valid_request_id(value)
            elif name == _DEADLINE:
                # The first header only, as DeadlineMiddleware does.
                if deadline_raw is None:
                    deadline_raw = value
            elif name in _TRACE_HEADERS:
                if carrier is None:
                    carrier = {}
                carrier[name.decode()] = value.decode("latin-1")
        method: str = scope["method"]
        parent = PROPAGATOR.extract(carrier) if carrier else None
        span: trace.Span
        if service.export_spans:
            span = self._server_span(service.tracer, method, parent)
        else:
            span = _light_span(parent)
        if _CURRENT_CONTEXT is not None:
            # set_span_in_context: a copy of the current context with the span added.
            ctx_token = _CURRENT_CONTEXT.set(
                otel_context.Context({**_CURRENT_CONTEXT.get(), _SPAN_KEY: span})
            )
        else:
            ctx_token = otel_context.attach(trace.set_span_in_context(span))
        recording = span.is_recording()
        span_ctx = span.get_span_context()
        # Lowercase hex, zero-padded: to_bytes().hex() takes half the time of format().
        trace_hex = span_ctx.trace_id.to_bytes(16).hex()
        if request_id is None:
            # The trace id is a fine request id: unique, and one id less to correlate.
            request_id = trace_hex
        rid_token = request_id_var.set(request_id)
        # The caller's deadline becomes the handler's (DeadlineMiddleware, fused here).
        at = parse_deadline(deadline_raw) if deadline_raw is not None else None
        dl_token = deadline_var.set(at) if at is not None else None
        rid_header = (_REQUEST_ID, request_id.encode())

        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        health = service.health
        metrics = service.metrics
        health.request_started()
        metrics.active += 1
        start = _perf_counter()
        failure: BaseException | None = None
        try:
            await self.app(scope, receive, send_wrapper)
            # Answered inside the users' middleware by answer_unhandled: still a crash.
            failure = scope.get(UNHANDLED)
        except Exception as exc:
            failure = exc
            if not started:
                await _send_500(
                    scope, send_wrapper, {"request_id": request_id, "trace_id": trace_hex}
                )
        finally:
            if failure is not None:
                if recording:
                    span.record_exception(failure)
                service.log.error(
                    "unhandled exception", method=method, path=scope["path"], exc_info=failure
                )
            seconds = _perf_counter() - start
            # Milliseconds to 3 decimals; round(x, 3) takes 0.37 us, this 0.07 us.
            duration_ms = int(seconds * 1_000_000 + 0.5) / 1000
            metrics.active -= 1
            health.request_finished()
            route = _route_template(scope)
            metrics.observe(method, route, status, seconds)
            if recording and span.__class__ is ServerSpan:
                span.finish(f"{method} {route}", method, route, status)
            elif recording:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
            if _logging.fast_access:
                valid = span_ctx.is_valid
                WRITER.msg(
                    access_line(
                        method,
                        scope["path"],
                        route,
                        status,
                        duration_ms,
                        request_id,
                        trace_hex if valid else None,
                        span_ctx.span_id.to_bytes(8).hex() if valid else None,
                    )
                )
            else:  # console lines, or a level above info: structlog decides
                service.log.info(
                    "request",
                    method=method,
                    path=scope["path"],
                    route=route,
                    status=status,
                    duration_ms=duration_ms,
                )
            if _CURRENT_CONTEXT is not None:
                _CURRENT_CONTEXT.reset(ctx_token)
            else:
                otel_context.detach(ctx_token)
            request_id_var.reset(rid_token)
            if dl_token is not None:
                deadline_var.reset(dl_token)

    async def _quiet(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A probe or scrape: only the 500 path (``ServerErrorMiddleware``'s job before)."""
        send_wrapper = _NotingStart(send)
        failure: BaseException | None = None
        try:
            await self.app(scope, receive, send_wrapper)
            failure = scope.get(UNHANDLED)  # answered by answer_unhandled
        except Exception as exc:
            failure = exc
            if not send_wrapper.started:
                await _send_500(scope, send, {})
        if failure is not None:
            self.service.log.error(
                "unhandled exception", method=scope["method"], path=scope["path"], exc_info=failure
            )


def _problem_500(scope: Scope, ids: dict[str, str]) -> bytes:
    return json.dumps(
        problem_body(
            500,
            detail="The server failed to handle this request"
            + ("; quote the request_id when reporting it." if ids else "."),
            instance=scope["path"],
            **ids,
        )
    ).encode()


async def _send_500(scope: Scope, send: Send, ids: dict[str, str]) -> None:
    body = _problem_500(scope, ids)
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
