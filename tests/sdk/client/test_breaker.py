"""The breaker's status agrees with its admission: ``retry_after`` is 0 exactly when a
probe may go (a fake clock, so no timing is involved)."""

from __future__ import annotations

import pytest

from corral.sdk.client import BreakerPolicy, CircuitOpenError
from corral.sdk.client._breaker import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("left", [0.9, 0.0004, 1e-9])
def test_retry_after_is_never_zero_while_a_probe_is_refused(left: float) -> None:
    clock = Clock()
    breaker = CircuitBreaker("t", BreakerPolicy(consecutive_failures=1, wait=1.0), clock=clock)
    breaker.release(breaker.acquire(1.0), False)
    assert breaker.state is CircuitState.OPEN
    clock.now += 1.0 - left
    assert breaker.snapshot()["retry_after"] > 0
    with pytest.raises(CircuitOpenError):
        breaker.acquire(1.0)
    clock.now += left
    assert breaker.snapshot()["retry_after"] == 0
    assert breaker.acquire(1.0) is True  # the probe
