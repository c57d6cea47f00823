"""Circuit breaker: closed -> open -> half-open (one probe at a time) -> closed or open.

Written by hand rather than taken from purgatory: purgatory opens on a consecutive-failure
threshold only (no failure rate over a window), does not limit half-open to one probe, and
routes every call through an async unit of work and message bus, which costs more than
the whole policy is allowed to add to a call. This one is a few counters, touched only
from the event loop, with no awaits inside.

A probe is bounded by the attempt's timeout, so a hung probe fails and reopens the
circuit. A probe whose caller vanished without reporting (cancelled task) gives its slot
back; and as a last guard the slot expires after ``probe_timeout``, so the breaker can
never stay stuck half-open.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from enum import StrEnum

from corral.sdk.client._errors import CircuitOpenError
from corral.sdk.client._policy import BreakerPolicy

__all__ = ["CircuitBreaker", "CircuitState"]

_BUCKETS = 10


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        target: str,
        policy: BreakerPolicy,
        *,
        on_change: Callable[[str, CircuitState, CircuitState, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.policy = policy
        self.state = CircuitState.CLOSED
        self.opened_at = 0.0
        self.consecutive = 0
        self._on_change = on_change
        self._clock = clock
        self._probe_since: float | None = None
        self._counts_only = policy.failure_rate is None
        self._bucket_width = policy.window / _BUCKETS
        self._calls = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        self._bucket_epoch = [0] * _BUCKETS

    # -- admission ---------------------------------------------------------------------
    def acquire(self, probe_timeout: float) -> bool:
        """Admit one attempt or raise :class:`CircuitOpenError`. True: this is the probe."""
        state = self.state
        if state is CircuitState.CLOSED:
            return False
        now = self._clock()
        if state is CircuitState.OPEN:
            remaining = self.opened_at + self.policy.wait - now
            if remaining > 0:
                raise CircuitOpenError(
                    f"circuit to {self.target!r} is open", target=self.target, retry_after=remaining
                )
            self._change(CircuitState.HALF_OPEN, "wait elapsed")
        elif self._probe_since is not None and now - self._probe_since <= probe_timeout:
            raise CircuitOpenError(
                f"circuit to {self.target!r} is half-open and its probe is in flight",
                target=self.target,
            )
        self._probe_since = now
        return True

    def release(self, probe: bool, success: bool | None) -> None:
        """Report an admitted attempt: True success, False failure, None no verdict
        (cancelled, or rejected before sending)."""
        if success and not probe and self._counts_only and self.state is CircuitState.CLOSED:
            self.consecutive = 0  # the common case, without _record()'s call
            return
        if probe:
            self._probe_since = None
            if success is None or self.state is not CircuitState.HALF_OPEN:
                return
            if success:
                self._reset_window()
                self.consecutive = 0
                self._change(CircuitState.CLOSED, "probe succeeded")
            else:
                self._open("probe failed")
            return
        if success is None or self.state is not CircuitState.CLOSED:
            return
        self._record(success)

    # -- closed-state accounting -------------------------------------------------------
    def _record(self, success: bool) -> None:
        policy = self.policy
        if self._counts_only:  # consecutive failures only: no window to keep
            if success:
                self.consecutive = 0
                return
            self.consecutive += 1
            if policy.consecutive_failures is not None and (
                self.consecutive >= policy.consecutive_failures
            ):
                self._open(f"{self.consecutive} consecutive failures")
            return
        epoch = int(self._clock() / self._bucket_width)
        index = epoch % _BUCKETS
        if self._bucket_epoch[index] != epoch:
            self._bucket_epoch[index] = epoch
            self._calls[index] = 0
            self._failures[index] = 0
        self._calls[index] += 1
        if success:
            self.consecutive = 0
            return
        self._failures[index] += 1
        self.consecutive += 1
        if policy.consecutive_failures is not None and (
            self.consecutive >= policy.consecutive_failures
        ):
            self._open(f"{self.consecutive} consecutive failures")
            return
        if policy.failure_rate is not None:
            calls = failures = 0
            for i in range(_BUCKETS):
                if epoch - self._bucket_epoch[i] < _BUCKETS:
                    calls += self._calls[i]
                    failures += self._failures[i]
            if calls >= policy.min_calls and failures / calls >= policy.failure_rate:
                self._open(f"failure rate {failures}/{calls} over {policy.window:g}s")

    def _reset_window(self) -> None:
        self._calls = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS

    def _open(self, why: str) -> None:
        self.opened_at = self._clock()
        self._probe_since = None
        self._change(CircuitState.OPEN, why)

    def _change(self, new: CircuitState, why: str) -> None:
        old, self.state = self.state, new
        if old is not new and self._on_change is not None:
            self._on_change(self.target, old, new, why)

    def snapshot(self) -> dict[str, object]:
        """For status endpoints: state, and when open, seconds until a probe may go."""
        retry_after = 0.0
        if self.state is CircuitState.OPEN:
            retry_after = max(0.0, self.opened_at + self.policy.wait - self._clock())
        return {
            "target": self.target,
            "state": self.state.value,
            "consecutive_failures": self.consecutive,
            # Rounded up: 0 must mean a probe may go now (acquire agrees), never "0.0004".
            "retry_after": math.ceil(retry_after * 1000) / 1000,
        }
