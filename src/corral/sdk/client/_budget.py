"""Retry budget: retries may be at most ``ratio`` x calls over a sliding window, plus a
small reserve of ``min_per_second`` x window, so that during an outage retries add at
most ``ratio`` to the load instead of multiplying it by the attempt count (Finagle's
RetryBudget, counted in buckets so each call costs O(1))."""

from __future__ import annotations

import time
from collections.abc import Callable

from corral.sdk.client._policy import RetryPolicy

__all__ = ["RetryBudget"]

_BUCKETS = 10


class RetryBudget:
    def __init__(self, policy: RetryPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ratio = policy.budget_ratio
        self.reserve = policy.budget_min_per_second * policy.budget_window
        self._width = policy.budget_window / _BUCKETS
        self._clock = clock
        self._calls = [0] * _BUCKETS
        self._retries = [0] * _BUCKETS
        self._epochs = [0] * _BUCKETS
        self._deposit_index = 0
        self._deposit_until = float("-inf")

    def _bucket(self) -> tuple[int, int]:
        epoch = int(self._clock() / self._width)
        index = epoch % _BUCKETS
        if self._epochs[index] != epoch:
            self._epochs[index] = epoch
            self._calls[index] = 0
            self._retries[index] = 0
        return epoch, index

    def deposit(self) -> None:
        """One client call was made (the hot path: one clock read while the bucket holds)."""
        now = self._clock()
        if now < self._deposit_until:
            self._calls[self._deposit_index] += 1
            return
        epoch = int(now / self._width)
        index = epoch % _BUCKETS
        if self._epochs[index] != epoch:
            self._epochs[index] = epoch
            self._calls[index] = 0
            self._retries[index] = 0
        self._deposit_index = index
        self._deposit_until = (epoch + 1) * self._width
        self._calls[index] += 1

    def try_withdraw(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        epoch, index = self._bucket()
        calls = retries = 0
        for i in range(_BUCKETS):
            if epoch - self._epochs[i] < _BUCKETS:
                calls += self._calls[i]
                retries += self._retries[i]
        if retries + 1 > self.ratio * calls + self.reserve:
            return False
        self._retries[index] += 1
        return True
