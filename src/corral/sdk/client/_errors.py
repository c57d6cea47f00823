"""Errors of service calls, one tree::

    ServiceCallError                      any failed call to another service
    ├── CallRejectedError                 nothing was sent
    │   ├── CircuitOpenError              the target's breaker is open (or its probe is out)
    │   ├── BulkheadFullError             too many calls in flight and queued to the target
    │   ├── DeadlineExceededError         the call's deadline passed (also a TimeoutError)
    │   └── NoInstancesError              discovery knows no serving instance
    └── UpstreamError                     sent, and it failed; ``status`` when there was one
        ├── UpstreamTimeoutError          an attempt ran out of time (also a TimeoutError)
        └── UpstreamConnectionError       connecting, sending or reading failed

Every error carries ``target`` (the called service) and ``attempts`` (attempts sent).
``DeadlineExceededError`` is also raised when the deadline cuts an attempt short.
"""

from __future__ import annotations

__all__ = [
    "BulkheadFullError",
    "CallRejectedError",
    "CircuitOpenError",
    "DeadlineExceededError",
    "NoInstancesError",
    "ServiceCallError",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamTimeoutError",
]


class ServiceCallError(Exception):
    """A call to another service failed; ``target`` names it."""

    reason = "error"

    def __init__(self, message: str, *, target: str, attempts: int = 0) -> None:
        super().__init__(message)
        self.target = target
        self.attempts = attempts


class CallRejectedError(ServiceCallError):
    """The call was refused on this side: no request was sent."""


class CircuitOpenError(CallRejectedError):
    reason = "circuit_open"

    def __init__(
        self, message: str, *, target: str, attempts: int = 0, retry_after: float = 0.0
    ) -> None:
        super().__init__(message, target=target, attempts=attempts)
        self.retry_after = retry_after
        """Seconds until the breaker lets a probe through (0 while a probe is out)."""


class BulkheadFullError(CallRejectedError):
    reason = "bulkhead_full"


class DeadlineExceededError(CallRejectedError, TimeoutError):
    reason = "deadline"


class NoInstancesError(CallRejectedError):
    reason = "no_instances"


class UpstreamError(ServiceCallError):
    """The target answered with a failure ``status`` (``None``: no answer at all)."""

    reason = "status"

    def __init__(
        self,
        message: str,
        *,
        target: str,
        attempts: int = 0,
        status: int | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message, target=target, attempts=attempts)
        self.status = status
        self.body = body


class UpstreamTimeoutError(UpstreamError, TimeoutError):
    reason = "timeout"


class UpstreamConnectionError(UpstreamError):
    reason = "connection"
