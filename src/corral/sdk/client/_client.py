"""``ServiceClient``: calls to one target service, by name, under its resilience policy.

One call, in order: the deadline is checked (an expired one never sends); the bulkhead
admits, queues or rejects; then per attempt the circuit breaker admits (or fails fast),
discovery and the balancer pick an instance, and the request goes out on a pooled aiohttp
session (chosen by bench/http_clients.py) with trace context, request id, caller and
deadline headers, bounded by the attempt timeout and the deadline (aiohttp's own
per-request timer). Failed attempts are retried with exponential backoff and full jitter
when the request is idempotent, the retry budget allows, and the deadline leaves room.
A ``fallback`` turns a final :class:`ServiceCallError` into a value.
"""

from __future__ import annotations

import asyncio
import inspect
import json as jsonlib
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import aiohttp
from multidict import CIMultiDict
from opentelemetry import context as otel_context
from opentelemetry.trace import (
    DEFAULT_TRACE_STATE,
    INVALID_SPAN,
    Span,
    SpanKind,
    Tracer,
    set_span_in_context,
)
from yarl import URL

from corral import contract
from corral.sdk import _tracing
from corral.sdk._context import request_id_var
from corral.sdk.client._balancer import Balancer, Balancing
from corral.sdk.client._breaker import CircuitBreaker, CircuitState
from corral.sdk.client._budget import RetryBudget
from corral.sdk.client._bulkhead import Bulkhead
from corral.sdk.client._deadline import deadline_var
from corral.sdk.client._discovery import Resolver, resolver_from_env
from corral.sdk.client._errors import (
    BulkheadFullError,
    DeadlineExceededError,
    ServiceCallError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeoutError,
)
from corral.sdk.client._policy import (
    IDEMPOTENCY_KEY,
    IDEMPOTENT_METHODS,
    Policies,
    Policy,
    RetryPolicy,
)
from corral.sdk.client._telemetry import ClientTelemetry

__all__ = ["Fallback", "Response", "ServiceClient"]

T = TypeVar("T")
Fallback = Callable[[ServiceCallError], T | Awaitable[T]]
"""Called with the final error; its (awaited) result is returned instead of a response."""


class Response:
    """A finished response (the body is read; the connection is back in the pool).

    Read-only by convention: a plain slotted class rather than a frozen dataclass, whose
    ``__init__`` goes through ``object.__setattr__`` per field on every call; ``url`` is
    turned into text only when asked for.
    """

    __slots__ = ("_url", "attempts", "content", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        content: bytes,
        url: str | URL,
        attempts: int = 1,
    ) -> None:
        self.status = status
        self.headers = headers
        self.content = content
        self._url = url
        self.attempts = attempts

    @property
    def url(self) -> str:
        url = self._url
        return url if isinstance(url, str) else str(url)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url} attempts={self.attempts}>"

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def raise_for_status(self) -> Response:
        """Raise :class:`UpstreamError` for a 4xx/5xx status; return self otherwise."""
        if self.status >= 400:
            raise UpstreamError(
                f"{self.url} answered {self.status}",
                target=self.url,
                attempts=self.attempts,
                status=self.status,
                body=self.content,
            )
        return self


class ServiceClient:
    """Pooled async client for one target service.

    ``await client.get("/estimate", params={"ride": "r1"})``;
    ``await client.get("/estimate", fallback=lambda exc: None)`` for graceful degradation.
    Statuses >= 500 that survive the policy raise :class:`UpstreamError`; other statuses
    are returned (``response.raise_for_status()`` turns 4xx into errors too).
    """

    def __init__(
        self,
        target: str,
        *,
        resolver: Resolver | None = None,
        policy: Policy | None = None,
        telemetry: ClientTelemetry | None = None,
        balancing: Balancing | str = Balancing.ROUND_ROBIN,
        caller: str | None = None,
        tracer: Tracer | None = None,
        pool_size: int = 100,
        own_resolver: bool | None = None,
    ) -> None:
        """``resolver``/``policy`` default to the ones ``CORRAL_DISCOVERY`` and
        ``CORRAL_RESILIENCE`` describe; ``tracer``: record a CLIENT span per call."""
        self.target = target
        self.policy = policy if policy is not None else Policies.from_env().for_target(target)
        self.resolver = resolver if resolver is not None else resolver_from_env()
        self._own_resolver = resolver is None if own_resolver is None else own_resolver
        self.telemetry = telemetry if telemetry is not None else ClientTelemetry()
        self._static_headers: dict[str, str] = {}
        self.caller = caller or os.environ.get(contract.SERVICE)
        self.tracer = tracer
        self.balancer = Balancer(Balancing(balancing))
        self._least = self.balancer.mode is Balancing.LEAST_OUTSTANDING
        self.breaker = (
            CircuitBreaker(
                target, self.policy.circuit_breaker, on_change=self.telemetry.circuit_changed
            )
            if self.policy.circuit_breaker is not None
            else None
        )
        if self.breaker is not None:
            self.telemetry.circuit_created(target)
        self.bulkhead = Bulkhead(target, self.policy.bulkhead) if self.policy.bulkhead else None
        self.budget = RetryBudget(self.policy.retries)
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._resolver_started = False
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._counts = self.telemetry.counts(target)
        self._deadline_ms = -1
        self._deadline_text = ""

    @property
    def caller(self) -> str | None:
        """The name sent in the caller header (the calling service)."""
        return self._caller

    @caller.setter
    def caller(self, value: str | None) -> None:
        self._caller = value
        # sent as a default header of the session: aiohttp merges it with each request's
        # own headers (which win) without a per-call copy
        self._static_headers = {} if value is None else {contract.CALLER_HEADER: value}
        session = getattr(self, "_session", None)
        if session is not None:
            session.headers.popall(contract.CALLER_HEADER, None)
            session.headers.update(self._static_headers)

    # -- verbs -------------------------------------------------------------------------
    def get(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # per-attempt policy timeout, as httpx's
        fallback: Fallback[T] | None = None,
    ) -> Coroutine[Any, Any, Response | T]:
        return self.request(
            "GET", path, params=params, headers=headers, timeout=timeout, fallback=fallback
        )

    def post(
        self,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # per-attempt policy timeout, as httpx's
        fallback: Fallback[T] | None = None,
    ) -> Coroutine[Any, Any, Response | T]:
        return self.request(
            "POST",
            path,
            json=json,
            content=content,
            params=params,
            headers=headers,
            timeout=timeout,
            fallback=fallback,
        )

    def put(
        self,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # per-attempt policy timeout, as httpx's
        fallback: Fallback[T] | None = None,
    ) -> Coroutine[Any, Any, Response | T]:
        return self.request(
            "PUT",
            path,
            json=json,
            content=content,
            params=params,
            headers=headers,
            timeout=timeout,
            fallback=fallback,
        )

    def delete(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # per-attempt policy timeout, as httpx's
        fallback: Fallback[T] | None = None,
    ) -> Coroutine[Any, Any, Response | T]:
        return self.request(
            "DELETE", path, params=params, headers=headers, timeout=timeout, fallback=fallback
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # per-attempt policy timeout, as httpx's
        fallback: Fallback[T] | None = None,
    ) -> Coroutine[Any, Any, Response | T]:
        """One call under the policy. ``timeout`` overrides the policy's per attempt.

        The verbs are plain functions returning the call's coroutine (as aiohttp's
        ``session.get`` returns an awaitable): without a fallback or a span to wrap around
        it, the policy's own coroutine is the call, with no coroutine per layer."""
        method = method.upper()
        if fallback is None and self.tracer is None:
            return self._call(method, path, json, content, params, headers, timeout)
        # The arguments, not a coroutine made now: a wrapper cancelled before it starts
        # must not leave an inner coroutine that was never awaited (a RuntimeWarning).
        args = (method, path, json, content, params, headers, timeout)
        return self._wrapped(method, args, fallback)

    # The verbs return coroutines: say so to inspect.iscoroutinefunction, so that
    # AsyncMock(spec=ServiceClient) and create_autospec mock them as async, as before.
    get = inspect.markcoroutinefunction(get)
    post = inspect.markcoroutinefunction(post)
    put = inspect.markcoroutinefunction(put)
    delete = inspect.markcoroutinefunction(delete)
    request = inspect.markcoroutinefunction(request)

    async def _wrapped(
        self, method: str, args: tuple[Any, ...], fallback: Fallback[T] | None
    ) -> Response | T:
        """A call with a CLIENT span around it and/or a fallback for its final error."""
        try:
            if self.tracer is None:
                return await self._call(*args)
            with self.tracer.start_as_current_span(
                f"{method} {self.target}", kind=SpanKind.CLIENT
            ) as span:
                span.set_attribute("corral.target", self.target)
                # runs inside the span: it is current when awaited
                response = await self._call(*args)
                span.set_attribute("http.response.status_code", response.status)
                return response
        except ServiceCallError as exc:
            if fallback is None:
                raise
            self.telemetry.fallback_used(self.target, exc.reason, str(exc))
            result = fallback(exc)
            if inspect.isawaitable(result):
                return await result
            return result

    # -- the policy --------------------------------------------------------------------
    # One coroutine per call: the deadline check, bulkhead, attempts and the send are one
    # frame rather than three nested ones (each nested coroutine is created per call and
    # resumed on every suspension). The rare paths (queueing, retry decisions, errors) are
    # plain methods.
    async def _call(
        self,
        method: str,
        path: str,
        json: Any,
        content: bytes | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        timeout_override: float | None,
    ) -> Response:
        target = self.target
        at = deadline_var.get()
        if at is not None and at <= time.time():
            self._counts.fail(DeadlineExceededError.reason)
            raise DeadlineExceededError(
                f"deadline passed before calling {target!r}; nothing was sent", target=target
            )
        bulkhead = self.bulkhead
        if bulkhead is not None and not bulkhead.try_acquire():
            await self._queue(bulkhead, at)
        try:
            policy = self.policy
            if policy.routes:
                policy_timeout, retry = policy.for_route(method, path)
            else:
                policy_timeout, retry = policy.timeout, policy.retries
            if timeout_override is not None:
                policy_timeout = timeout_override
            if not self._resolver_started:
                await self.resolver.start()
                self._resolver_started = True
            session = self._session or self._open_session()
            self.budget.deposit()
            outgoing = self._context_headers(headers)
            breaker = self.breaker
            least = self._least
            url = ""
            attempt = 0
            while True:
                attempt += 1
                attempt_timeout = policy_timeout
                cut = False
                if at is not None:
                    left = at - time.time()
                    if left <= 0:
                        raise DeadlineExceededError(
                            f"deadline passed before attempt {attempt} to {target!r}",
                            target=target,
                            attempts=attempt - 1,
                        )
                    if left < attempt_timeout:
                        attempt_timeout, cut = left, True
                # a closed breaker admits without a call (acquire() would return False)
                probe = (
                    breaker.acquire(attempt_timeout)
                    if breaker is not None and breaker.state is not _CLOSED
                    else False
                )
                verdict: bool | None = None
                error: ServiceCallError | None = None
                response: Response | None = None
                try:
                    urls = self.resolver.endpoints(target)
                    url = urls[0] if len(urls) == 1 else self.balancer.pick(urls, url or None)
                    if attempt_timeout <= 0:  # aiohttp would read 0 as "no timeout"
                        raise TimeoutError
                    # The deadline header: the caller's deadline when it cuts the attempt,
                    # else the end of the attempt timeout; in whole milliseconds, rounded
                    # down (never later than the real one), and formatted once per
                    # millisecond: float formatting is most of the header's cost.
                    ends = at if cut and at is not None else time.time() + attempt_timeout
                    ends_ms = int(ends * 1000)
                    if ends_ms != self._deadline_ms:
                        self._deadline_ms = ends_ms
                        self._deadline_text = f"{ends_ms / 1000:.3f}"
                    outgoing[_DEADLINE] = self._deadline_text
                    if cut:
                        bound = _attempt_timeout(attempt_timeout)  # a one-off value
                    else:
                        bound = self._timeouts.get(attempt_timeout) or self._timeout_for(
                            attempt_timeout
                        )
                    if least:
                        self.balancer.begin(url)
                    try:
                        # aiohttp's own per-request timer bounds the whole attempt
                        # (connecting, sending, headers and body: it is cancelled when the
                        # body is read) and raises TimeoutError, as an asyncio.timeout
                        # around it would, without a second timer per attempt. Awaited
                        # directly rather than as ``async with``: read() already waits
                        # for the connection's release, so only a failed read needs the
                        # release that __aexit__ would do.
                        raw = await session.request(
                            method,
                            url + path,
                            params=params,
                            json=json,
                            data=content,
                            headers=outgoing,
                            timeout=bound,
                        )
                        try:
                            body = await raw.read()
                        except BaseException:
                            raw.release()
                            raise
                    finally:
                        if least:
                            self.balancer.end(url)
                    response = Response(raw.status, raw.headers, body, raw.url, attempt)
                    verdict = raw.status < 500
                except TimeoutError:
                    verdict = False
                    error = (DeadlineExceededError if cut else UpstreamTimeoutError)(
                        f"attempt {attempt} to {target!r} timed out after {attempt_timeout:.3f}s",
                        target=target,
                        attempts=attempt,
                    )
                except (aiohttp.ClientError, OSError) as exc:
                    verdict = False
                    error = UpstreamConnectionError(
                        f"attempt {attempt} to {target!r} failed: {exc!r}",
                        target=target,
                        attempts=attempt,
                    )
                finally:
                    if breaker is not None:
                        breaker.release(probe, verdict)
                if (
                    response is not None
                    and response.status < 500
                    and (response.status not in retry.on_status)
                ):
                    self._counts.ok += 1
                    return response
                delay = self._retry_delay(
                    method, path, headers, retry, attempt, response, error, cut, at
                )
                if delay is None:  # a status below 500 that may not be retried
                    assert response is not None
                    self._counts.ok += 1
                    return response
                await asyncio.sleep(delay)
        except ServiceCallError as exc:
            self._counts.fail(exc.reason)
            raise
        finally:
            if bulkhead is not None:
                bulkhead.release()

    async def _queue(self, bulkhead: Bulkhead, at: float | None) -> None:
        """Wait for a bulkhead slot (all taken), or count and raise the rejection."""
        target = self.target
        try:
            await bulkhead.acquire(None if at is None else at - time.time())
        except BulkheadFullError:
            self.telemetry.bulkhead_rejected(target, bulkhead.active, bulkhead.queued)
            self._counts.fail(BulkheadFullError.reason)
            raise
        except TimeoutError:
            self._counts.fail(DeadlineExceededError.reason)
            raise DeadlineExceededError(
                f"deadline passed waiting in the bulkhead of {target!r}", target=target
            ) from None

    def _retry_delay(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None,
        retry: RetryPolicy,
        attempt: int,
        response: Response | None,
        error: ServiceCallError | None,
        cut: bool,
        at: float | None,
    ) -> float | None:
        """After a failed attempt: the backoff before the next one, or raise; None: the
        response (a retryable status below 500 that may not be retried) is the answer."""
        target = self.target
        retryable = retry.attempts > 1 and (
            method in IDEMPOTENT_METHODS
            or (headers is not None and any(k.lower() == IDEMPOTENCY_KEY for k in headers))
        )
        if response is not None:
            status = response.status
            if status not in retry.on_status or not retryable or attempt >= retry.attempts:
                if status < 500:
                    return None
                raise UpstreamError(
                    f"{target!r} answered {status} to {method} {path}",
                    target=target,
                    attempts=attempt,
                    status=status,
                    body=response.content,
                )
            why = f"status {status}"
            error = UpstreamError(
                f"{target!r} answered {status} to {method} {path}",
                target=target,
                attempts=attempt,
                status=status,
                body=response.content,
            )
        else:
            assert error is not None
            if not retryable or attempt >= retry.attempts or cut:
                raise error
            why = error.reason
        if not self.budget.try_withdraw():
            self.telemetry.budget_spent(target, attempt)
            raise error
        delay = random.uniform(0, min(retry.max, retry.initial * 2 ** (attempt - 1)))  # noqa: S311
        if at is not None and time.time() + delay >= at:
            raise error
        self.telemetry.retry(target, attempt, delay, why)
        return delay

    def _context_headers(self, headers: Mapping[str, str] | None) -> CIMultiDict[str]:
        """The request's headers plus what :func:`corral.sdk._tracing.inject_trace_headers`
        adds, without the propagator machinery: W3C ``traceparent``/``tracestate`` only
        when a valid span is current (the same text ``TraceContextTextMapPropagator``
        writes), the request id and, when the client has no caller of its own and the
        request none either, the process's caller name. (The client's own caller is a
        session default header; the request's headers win over it.) One CIMultiDict, which
        aiohttp takes without converting it."""
        out: CIMultiDict[str] = CIMultiDict(headers) if headers else CIMultiDict()
        # trace.get_current_span(), two calls shorter: the current context's span entry
        # (only set_span_in_context writes that key, always with a Span: no isinstance
        # check against the Span ABC, which is two more calls)
        span: Span | None = otel_context.get_current().get(_SPAN_KEY)  # type: ignore[assignment]
        if span is not None:
            ctx = span.get_span_context()
            if ctx.is_valid:
                # bytes.hex() of the ids: the same text as the propagator's
                # "{:032x}" formatting in under half the time
                out[_TRACEPARENT] = (
                    f"00-{ctx.trace_id.to_bytes(16).hex()}-{ctx.span_id.to_bytes(8).hex()}"
                    f"{_FLAGS[ctx.trace_flags & 0xFF]}"
                )
                state = ctx.trace_state
                # most spans share the empty default; its truth test is a Python __len__
                if state is not DEFAULT_TRACE_STATE and state:
                    out[_TRACESTATE] = state.to_header()
        request_id = request_id_var.get()
        if request_id is not None:
            out.setdefault(contract.REQUEST_ID_HEADER, request_id)
        if self._caller is None:
            caller = _tracing._caller  # the SDK's own process-wide caller name (set_caller)
            if caller:
                out.setdefault(contract.CALLER_HEADER, caller[0])
        return out

    def _timeout_for(self, seconds: float) -> aiohttp.ClientTimeout:
        bound = _attempt_timeout(seconds)
        # the policy's few timeouts (and per-call overrides) are built once
        if len(self._timeouts) < 16:
            self._timeouts[seconds] = bound
        return bound

    # -- lifecycle ---------------------------------------------------------------------
    def _open_session(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=None),
            headers=self._static_headers,
            # One session carries the calls of every request this service handles: a
            # cookie one upstream answer sets must not ride along on other users' calls.
            # (No jar to consult is also cheaper per call.)
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    def circuit(self) -> dict[str, object]:
        """The breaker's state for status pages (``{"state": "disabled"}`` without one)."""
        if self.breaker is None:
            return {"target": self.target, "state": "disabled"}
        return self.breaker.snapshot()

    async def aclose(self) -> None:
        """Close the connection pool (and the resolver, when this client made it)."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        if self._own_resolver:
            await self.resolver.stop()
            self._resolver_started = False

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


def _attempt_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """One attempt's bound as aiohttp's total timeout. No rounding: aiohttp rounds
    timeouts of 5 s or more up to a whole second of loop time unless told otherwise."""
    return aiohttp.ClientTimeout(total=seconds, ceil_threshold=math.inf)


_TRACEPARENT = "traceparent"
_TRACESTATE = "tracestate"
_FLAGS = tuple(f"-{flags:02x}" for flags in range(256))
_DEADLINE = contract.DEADLINE_HEADER
_CLOSED = CircuitState.CLOSED
# The key OpenTelemetry keeps the current span under (private to it, with a random
# suffix), found through its public API: the only entry of a context holding a span.
(_SPAN_KEY,) = set_span_in_context(INVALID_SPAN, otel_context.Context())
