"""The fake provider charges once per idempotency key and fails on demand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fakepay.domain import Faults, InjectedFailure, KeyReused, Provider

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def charge(provider: Provider, key: str = "k1", amount: str = "12.30") -> tuple[object, bool]:
    return provider.charge(key=key, amount=Decimal(amount), currency="EUR", reference="r1", now=NOW)


def test_same_key_replays_the_first_charge() -> None:
    """A retried key returns the original charge, flagged as a replay, and books nothing new."""
    provider = Provider()
    first, replayed = charge(provider)
    again, replayed_again = charge(provider)
    assert (replayed, replayed_again) == (False, True)
    assert again == first
    assert len(provider.charges) == 1


def test_same_key_different_amount_is_a_conflict() -> None:
    """Reusing a key for another amount is refused."""
    provider = Provider()
    charge(provider)
    with pytest.raises(KeyReused):
        charge(provider, amount="99.00")


def test_failures_are_not_remembered_so_a_retry_can_succeed() -> None:
    """fail_next=2: two failures, then the third attempt with the same key charges once."""
    provider = Provider(Faults(fail_next=2))
    for _ in range(2):
        with pytest.raises(InjectedFailure):
            charge(provider)
    _, replayed = charge(provider)
    assert not replayed
    assert (provider.attempts, provider.failures, len(provider.charges)) == (3, 2, 1)


def test_failure_rate_is_seeded_and_roughly_right() -> None:
    """A 30% failure rate fails about 30% of 2000 distinct charges, reproducibly."""

    def failures(seed: int) -> int:
        provider = Provider(Faults(failure_rate=0.3, seed=seed))
        count = 0
        for i in range(2000):
            try:
                charge(provider, key=f"k{i}")
            except InjectedFailure:
                count += 1
        return count

    assert failures(1) == failures(1)
    assert 520 < failures(1) < 680


@pytest.mark.parametrize("kwargs", [{"failure_rate": 1.5}, {"fail_next": -1}, {"latency_ms": -5}])
def test_bad_fault_settings(kwargs: dict[str, float]) -> None:
    """Out-of-range fault settings are refused."""
    with pytest.raises(ValueError):  # noqa: PT011
        Faults(**kwargs)  # type: ignore[arg-type]
