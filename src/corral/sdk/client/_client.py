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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
from multidict import CIMultiDict
from opentelemetry.trace import SpanKind, Tracer, get_current_span
from yarl import URL

from corral import contract
from corral.sdk import _tracing
from corral.sdk._context import request_id_var
from corral.sdk.client._balancer import Balancer, Balancing
from corral.sdk.client._breaker import CircuitBreaker
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
from corral.sdk.client._policy import IDEMPOTENCY_KEY, IDEMPOTENT_METHODS, Policies, Policy
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
    async def get(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per-attempt policy timeout, as httpx's
        fallback: Fallback[T] | None = None,
    ) -> Response | T:
        return await self.request(
            "GET", path, params=params, headers=headers, timeout=timeout, fallback=fallback
        )

    async def post(
        self,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per-attempt policy timeout, as httpx's
        fallback: Fallback[T] | None = None,
    ) -> Response | T:
        return await self.request(
            "POST",
            path,
            json=json,
            content=content,
            params=params,
            headers=headers,
            timeout=timeout,
            fallback=fallback,
        )

    async def put(
        self,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per-attempt policy timeout, as httpx's
        fallback: Fallback[T] | None = None,
    ) -> Response | T:
        return await self.request(
            "PUT",
            path,
            json=json,
            content=content,
            params=params,
            headers=headers,
            timeout=timeout,
            fallback=fallback,
        )

    async def delete(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per-attempt policy timeout, as httpx's
        fallback: Fallback[T] | None = None,
    ) -> Response | T:
        return await self.request(
            "DELETE", path, params=params, headers=headers, timeout=timeout, fallback=fallback
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per-attempt policy timeout, as httpx's
        fallback: Fallback[T] | None = None,
    ) -> Response | T:
        """One call under the policy. ``timeout`` overrides the policy's per attempt."""
        try:
            if self.tracer is None:
                return await self._call(
                    method.upper(), path, json, content, params, headers, timeout
                )
            with self.tracer.start_as_current_span(
                f"{method.upper()} {self.target}", kind=SpanKind.CLIENT
            ) as span:
                span.set_attribute("corral.target", self.target)
                response = await self._call(
                    method.upper(), path, json, content, params, headers, timeout
                )
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
        telemetry = self.telemetry
        at = deadline_var.get()
        if at is not None and at <= time.time():
            telemetry.call_failed(target, DeadlineExceededError.reason)
            raise DeadlineExceededError(
                f"deadline passed before calling {target!r}; nothing was sent", target=target
            )
        bulkhead = self.bulkhead
        if bulkhead is not None and not bulkhead.try_acquire():
            try:
                await bulkhead.acquire(None if at is None else at - time.time())
            except BulkheadFullError:
                telemetry.bulkhead_rejected(target, bulkhead.active, bulkhead.queued)
                telemetry.call_failed(target, BulkheadFullError.reason)
                raise
            except TimeoutError:
                telemetry.call_failed(target, DeadlineExceededError.reason)
                raise DeadlineExceededError(
                    f"deadline passed waiting in the bulkhead of {target!r}", target=target
                ) from None
        try:
            response = await self._attempts(
                method, path, json, content, params, headers, timeout_override, at
            )
        except ServiceCallError as exc:
            telemetry.call_failed(target, exc.reason)
            raise
        finally:
            if bulkhead is not None:
                bulkhead.release()
        telemetry.call_ok(target)
        return response

    async def _attempts(
        self,
        method: str,
        path: str,
        json: Any,
        content: bytes | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        timeout_override: float | None,
        at: float | None,
    ) -> Response:
        target = self.target
        policy_timeout, retry = self.policy.for_route(method, path)
        if timeout_override is not None:
            policy_timeout = timeout_override
        retryable = retry.attempts > 1 and (
            method in IDEMPOTENT_METHODS
            or (headers is not None and any(k.lower() == IDEMPOTENCY_KEY for k in headers))
        )
        if not self._resolver_started:
            await self.resolver.start()
            self._resolver_started = True
        session = self._session or self._open_session()
        breaker = self.breaker
        budget = self.budget
        budget.deposit()
        attempt = 0
        last_url: str | None = None
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
            probe = breaker.acquire(attempt_timeout) if breaker is not None else False
            verdict: bool | None = None
            error: ServiceCallError | None = None
            response: Response | None = None
            try:
                url = self.balancer.pick(self.resolver.endpoints(target), last_url)
                last_url = url
                response = await self._send(
                    session,
                    method,
                    url,
                    path,
                    json,
                    content,
                    params,
                    headers,
                    attempt_timeout,
                    attempt,
                    at if cut else None,
                )
                verdict = response.status < 500
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
            if response is not None:
                status = response.status
                if status not in retry.on_status and status < 500:
                    return response
                if status not in retry.on_status or not retryable or attempt >= retry.attempts:
                    if status < 500:
                        return response
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
            if not budget.try_withdraw():
                self.telemetry.budget_spent(target, attempt)
                raise error
            delay = random.uniform(0, min(retry.max, retry.initial * 2 ** (attempt - 1)))  # noqa: S311
            if at is not None and time.time() + delay >= at:
                raise error
            self.telemetry.retry(target, attempt, delay, why)
            await asyncio.sleep(delay)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        path: str,
        json: Any,
        content: bytes | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        attempt_timeout: float,
        attempt: int,
        send_deadline: float | None,
    ) -> Response:
        # the caller is a session default header; the request's own headers win over it
        outgoing: CIMultiDict[str] = CIMultiDict(headers) if headers else CIMultiDict()
        _context_headers(outgoing, self._caller is None)  # traceparent, request id
        cut = send_deadline is not None
        if send_deadline is None:
            send_deadline = time.time() + attempt_timeout
        outgoing[contract.DEADLINE_HEADER] = f"{send_deadline:.6f}"
        if attempt_timeout <= 0:  # aiohttp would read 0 as "no timeout"
            raise TimeoutError
        bound = None if cut else self._timeouts.get(attempt_timeout)
        if bound is None:
            bound = _attempt_timeout(attempt_timeout)
            # the policy's few timeouts (and per-call overrides) are built once; a
            # deadline's cut is a one-off value
            if not cut and len(self._timeouts) < 16:
                self._timeouts[attempt_timeout] = bound
        least = self._least
        if least:
            self.balancer.begin(url)
        try:
            # aiohttp's own per-request timer bounds the whole attempt (connecting,
            # sending, headers and body: it is cancelled when the body is read) and
            # raises TimeoutError, as an asyncio.timeout around it would, without a
            # second timer per attempt.
            async with session.request(
                method,
                url + path,
                params=params,
                json=json,
                data=content,
                headers=outgoing,
                timeout=bound,
            ) as raw:
                body = await raw.read()
                return Response(raw.status, raw.headers, body, raw.url, attempt)
        finally:
            if least:
                self.balancer.end(url)

    # -- lifecycle ---------------------------------------------------------------------
    def _open_session(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=None),
            headers=self._static_headers,
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


def _context_headers(out: CIMultiDict[str], no_caller: bool) -> None:
    """What :func:`corral.sdk._tracing.inject_trace_headers` adds, without the propagator
    machinery: W3C ``traceparent``/``tracestate`` only when a valid span is current (the
    same text ``TraceContextTextMapPropagator.inject`` writes), then the request id and,
    when the client has no caller of its own and the request none either, the process's
    caller name."""
    ctx = get_current_span().get_span_context()
    if ctx.is_valid:
        out[_TRACEPARENT] = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
        if ctx.trace_state:
            out[_TRACESTATE] = ctx.trace_state.to_header()
    request_id = request_id_var.get()
    if request_id is not None:
        out.setdefault(contract.REQUEST_ID_HEADER, request_id)
    caller = _tracing._caller  # the SDK's own process-wide caller name (set_caller)
    if no_caller and caller:
        out.setdefault(contract.CALLER_HEADER, caller[0])
