"""``ServiceClient``: calls to one target service, by name, under its resilience policy.

One call, in order: the deadline is checked (an expired one never sends); the bulkhead
admits, queues or rejects; then per attempt the circuit breaker admits (or fails fast),
discovery and the balancer pick an instance, and the request goes out on a pooled aiohttp
session (chosen by bench/http_clients.py) with trace context, request id, caller,
identity and deadline headers (``_headers.py``), bounded by the attempt timeout and the
deadline (aiohttp's own per-request timer). Failed attempts are retried with exponential
backoff and full jitter when the request is idempotent, the retry budget allows, and the
deadline leaves room.
A ``fallback`` turns a final :class:`ServiceCallError` into a value.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, NoReturn, TypeVar

import aiohttp
from multidict import CIMultiDict
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from corral import contract
from corral.sdk.client._balancer import Balancer, Balancing
from corral.sdk.client._breaker import CircuitBreaker, CircuitState
from corral.sdk.client._budget import RetryBudget
from corral.sdk.client._bulkhead import Bulkhead
from corral.sdk.client._deadline import deadline_var
from corral.sdk.client._discovery import Resolver, resolver_from_env
from corral.sdk.client._errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceededError,
    ServiceCallError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeoutError,
)
from corral.sdk.client._faults import CallFault, injected_response
from corral.sdk.client._headers import context_headers
from corral.sdk.client._policy import (
    IDEMPOTENCY_KEY,
    IDEMPOTENT_METHODS,
    Policies,
    Policy,
    RetryPolicy,
)
from corral.sdk.client._response import Response
from corral.sdk.client._telemetry import ClientTelemetry

__all__ = ["Fallback", "Response", "ServiceClient"]

T = TypeVar("T")
Fallback = Callable[[ServiceCallError], T | Awaitable[T]]
"""Called with the final error; its (awaited) result is returned instead of a response."""


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
        forward_identity: bool = True,
    ) -> None:
        """``resolver``/``policy`` default to the ones ``CORRAL_DISCOVERY`` and
        ``CORRAL_RESILIENCE`` describe; ``tracer``: record a CLIENT span per call;
        ``forward_identity``: send the verified bearer token of the request being served
        along, so the target sees the same caller (see corral.sdk.identity)."""
        self.target = target
        self.forward_identity = forward_identity
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
        self.fault: CallFault | None = None
        """A caller-side chaos fault on these calls (set by the ClientHub's fault feed;
        see ``_faults.py``): None on every call but those of a chaos experiment."""

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
        if self.tracer is None:
            try:
                return await self._call(*args)
            except ServiceCallError as exc:
                if fallback is None:
                    raise
                return await self._fall_back(exc, fallback)
        with self.tracer.start_as_current_span(
            f"{method} {self.target}", kind=SpanKind.CLIENT
        ) as span:
            span.set_attribute("corral.target", self.target)
            try:
                # runs inside the span: it is current when awaited
                response = await self._call(*args)
            except ServiceCallError as exc:
                if fallback is None:
                    raise
                # Inside the span, so the fallback is one of its events; the call failed
                # all the same, and the span says so.
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                return await self._fall_back(exc, fallback)
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    async def _fall_back(self, exc: ServiceCallError, fallback: Fallback[T]) -> T:
        self.telemetry.fallback_used(self.target, exc.reason, str(exc))
        result = fallback(exc)
        if inspect.isawaitable(result):
            return await result
        return result

    # -- the policy --------------------------------------------------------------------
    # One call is this coroutine plus one per attempt (_attempt); the steps between are
    # plain methods, which cost a call where a nested coroutine costs a frame created per
    # call and resumed on every suspension. The rare paths (queueing, retry decisions,
    # errors) stay out of the way.
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
        at = deadline_var.get()
        if at is not None and at <= time.time():
            self._reject_expired()
        bulkhead = self.bulkhead
        if bulkhead is not None and not bulkhead.try_acquire():
            await self._queue(bulkhead, at)
        try:
            policy = self.policy
            if policy.routes or timeout_override is not None:
                policy_timeout, retry = self._route_policy(method, path, timeout_override)
            else:  # the common case, without a call
                policy_timeout, retry = policy.timeout, policy.retries
            if not self._resolver_started:
                await self.resolver.start()
                self._resolver_started = True
            session = self._session or self._open_session()
            self.budget.deposit()
            outgoing = context_headers(
                headers, add_caller=self._caller is None, forward_identity=self.forward_identity
            )
            request = (session, method, path, params, json, content, outgoing)
            url = ""
            attempt = 0
            while True:
                attempt += 1
                if at is None:  # no deadline: the policy's timeout, without a call
                    attempt_timeout, cut = policy_timeout, False
                else:
                    attempt_timeout, cut = self._attempt_window(policy_timeout, at, attempt)
                response, error, url = await self._attempt(
                    request, url, attempt, attempt_timeout, cut, at
                )
                if (
                    response is not None
                    and response.status_code < 500
                    and response.status_code not in retry.on_status
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

    def _reject_expired(self) -> NoReturn:
        """The caller's deadline passed before the call: nothing is sent."""
        self._counts.fail(DeadlineExceededError.reason)
        raise DeadlineExceededError(
            f"deadline passed before calling {self.target!r}; nothing was sent",
            target=self.target,
        )

    def _route_policy(
        self, method: str, path: str, timeout_override: float | None
    ) -> tuple[float, RetryPolicy]:
        """The attempt timeout and retry policy for this request (per route, when the
        policy has routes; ``timeout`` given to the call wins)."""
        policy = self.policy
        if policy.routes:
            policy_timeout, retry = policy.for_route(method, path)
        else:
            policy_timeout, retry = policy.timeout, policy.retries
        if timeout_override is not None:
            policy_timeout = timeout_override
        return policy_timeout, retry

    def _attempt_window(
        self, policy_timeout: float, at: float | None, attempt: int
    ) -> tuple[float, bool]:
        """How long this attempt may take, and whether the caller's deadline (rather than
        the policy's timeout) is what bounds it; raises when the deadline has passed."""
        if at is None:
            return policy_timeout, False
        left = at - time.time()
        if left <= 0:
            raise DeadlineExceededError(
                f"deadline passed before attempt {attempt} to {self.target!r}",
                target=self.target,
                attempts=attempt - 1,
            )
        if left < policy_timeout:
            return left, True
        return policy_timeout, False

    async def _attempt(
        self,
        request: tuple[
            aiohttp.ClientSession,
            str,
            str,
            Mapping[str, str] | None,
            Any,
            bytes | None,
            CIMultiDict[str],
        ],
        previous_url: str,
        attempt: int,
        attempt_timeout: float,
        cut: bool,
        at: float | None,
    ) -> tuple[Response | None, ServiceCallError | None, str]:
        """One attempt: the breaker admits it (or raises :class:`CircuitOpenError`), an
        instance is picked (another than ``previous_url`` when there is one), the request
        goes out and its body is read. Returns the response, or the error that ended the
        attempt, and the URL used; the breaker hears the verdict either way."""
        session, method, path, params, json, content, outgoing = request
        breaker = self.breaker
        # a closed breaker admits without a call (acquire() would return False)
        try:
            probe = (
                breaker.acquire(attempt_timeout)
                if breaker is not None and breaker.state is not _CLOSED
                else False
            )
        except CircuitOpenError as rejected:
            self.telemetry.circuit_rejected(self.target, rejected.reason)
            raise
        verdict: bool | None = None
        url = previous_url
        try:
            urls = self.resolver.endpoints(self.target)
            url = urls[0] if len(urls) == 1 else self.balancer.pick(urls, previous_url or None)
            if attempt_timeout <= 0:  # aiohttp would read 0 as "no timeout"
                raise TimeoutError
            send_timeout, one_off = attempt_timeout, cut
            if self.fault is not None:  # a chaos experiment: rare, kept out of the way
                injected, send_timeout = await self._inject(url, attempt, attempt_timeout)
                if injected is not None:
                    verdict = injected.status_code < 500
                    return injected, None, url
                one_off = cut or send_timeout != attempt_timeout  # what a delay left
            # The deadline the callee gets: the caller's when it cuts the attempt, else the
            # end of the attempt timeout; in whole milliseconds, rounded down (never later
            # than the real one). The text is made once per millisecond (_deadline_text).
            ends_ms = int((at if cut and at is not None else time.time() + send_timeout) * 1000)
            if ends_ms != self._deadline_ms:
                self._deadline_text_for(ends_ms)
            outgoing[_DEADLINE] = self._deadline_text
            least = self._least
            if least:
                self.balancer.begin(url)
            try:
                # aiohttp's own per-request timer bounds the whole attempt (connecting,
                # sending, headers and body: it is cancelled when the body is read) and
                # raises TimeoutError, as an asyncio.timeout around it would, without a
                # second timer per attempt. Awaited directly rather than as ``async
                # with``: read() already waits for the connection's release, so only a
                # failed read needs the release that __aexit__ would do.
                raw = await session.request(
                    method,
                    url + path,
                    params=params,
                    json=json,
                    data=content,
                    headers=outgoing,
                    timeout=(None if one_off else self._timeouts.get(send_timeout))
                    or self._timeout(send_timeout, one_off),
                )
                try:
                    body = await raw.read()
                except BaseException:
                    raw.release()
                    raise
            finally:
                if least:
                    self.balancer.end(url)
            verdict = raw.status < 500
            return Response(raw.status, raw.headers, body, raw.url, attempt), None, url
        except TimeoutError:
            verdict = False
            error: ServiceCallError = (DeadlineExceededError if cut else UpstreamTimeoutError)(
                f"attempt {attempt} to {self.target!r} timed out after {attempt_timeout:.3f}s",
                target=self.target,
                attempts=attempt,
            )
            return None, error, url
        except (aiohttp.ClientError, OSError) as exc:
            verdict = False
            error = UpstreamConnectionError(
                f"attempt {attempt} to {self.target!r} failed: {exc!r}",
                target=self.target,
                attempts=attempt,
            )
            return None, error, url
        finally:
            if breaker is not None:
                breaker.release(probe, verdict)

    async def _inject(
        self, url: str, attempt: int, attempt_timeout: float
    ) -> tuple[Response | None, float]:
        """Apply the caller-side fault to this attempt (see ``_faults.py``): the made-up
        answer of an abort, or None and the attempt's time left after the delay. A delay
        the attempt has no time for ends it as a timeout."""
        fault = self.fault
        if fault is None or fault.until <= time.time():
            self.fault = None  # over: the client enforces the end itself
            return None, attempt_timeout
        if not fault.hits(random.random()):  # noqa: S311 - chaos, not cryptography
            return None, attempt_timeout
        self.telemetry.fault_injected(self.target, fault.id, fault.describe(), attempt)
        if fault.delay:
            if fault.delay >= attempt_timeout:
                await asyncio.sleep(attempt_timeout)
                raise TimeoutError
            await asyncio.sleep(fault.delay)
            attempt_timeout -= fault.delay
        if fault.abort_status:
            return injected_response(fault, url, attempt), attempt_timeout
        return None, attempt_timeout

    def _deadline_text_for(self, ends_ms: int) -> None:
        """Format the deadline header's text for ``ends_ms``: float formatting is most of
        the header's cost, so it is done once per millisecond, not per call."""
        self._deadline_ms = ends_ms
        self._deadline_text = f"{ends_ms / 1000:.3f}"

    def _timeout(self, seconds: float, cut: bool) -> aiohttp.ClientTimeout:
        """aiohttp's bound for one attempt: the policy's few timeouts (and per-call
        overrides) are built once; one cut short by a deadline is a one-off value."""
        if cut:
            return _attempt_timeout(seconds)
        bound = self._timeouts.get(seconds)
        if bound is None:
            bound = _attempt_timeout(seconds)
            if len(self._timeouts) < 16:
                self._timeouts[seconds] = bound
        return bound

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
            status = response.status_code
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


_DEADLINE = contract.DEADLINE_HEADER
_CLOSED = CircuitState.CLOSED
