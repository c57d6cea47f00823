"""Fares in Decimal, one idempotency key per ride, when a failing payment is failed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from payments.domain import (
    ChargeOutcome,
    Money,
    PaymentStatus,
    Tariff,
    classify_status,
    idempotency_key,
    status_after_failure,
)

TARIFF = Tariff(
    base=Decimal("2.50"),
    per_km=Decimal("1.10"),
    per_minute=Decimal("0.30"),
    minimum=Decimal("5.00"),
)


@pytest.mark.parametrize(
    ("km", "seconds", "amount"),
    [
        (10, 1200, "19.50"),  # 2.50 + 11.00 + 6.00
        (0, 0, "5.00"),  # the minimum
        (1.5, 90, "5.00"),  # 2.50 + 1.65 + 0.45 = 4.60 -> minimum
        (3.333, 400, "8.17"),  # 2.50 + 3.6663 + 2.00 = 8.1663
        (2.5, 30, "5.40"),  # 2.50 + 2.75 + 0.15
        (0.1, 1, "5.00"),
    ],
)
def test_fare_table(km: float, seconds: float, amount: str) -> None:
    """base + per km + per minute, never below the minimum, rounded to cents."""
    assert TARIFF.fare(distance_km=km, duration_s=seconds) == Money(Decimal(amount), "EUR")


def test_rounding_is_half_even_and_per_currency() -> None:
    """A half cent rounds to even; yen have no minor unit."""
    tariff = Tariff(
        base=Decimal("5.005"), per_km=Decimal(0), per_minute=Decimal(0), minimum=Decimal(0)
    )
    assert tariff.fare(distance_km=0, duration_s=0).amount == Decimal("5.00")
    yen = Tariff(
        base=Decimal(500),
        per_km=Decimal("120.5"),
        per_minute=Decimal(0),
        minimum=Decimal(0),
        currency="JPY",
    )
    assert yen.fare(distance_km=1, duration_s=0) == Money(Decimal(620), "JPY")


@pytest.mark.parametrize(
    "kwargs",
    [{"base": Decimal(-1)}, {"per_km": 1.1}, {"currency": "XXX"}, {"minimum": Decimal("NaN")}],
)
def test_bad_tariffs_are_refused(kwargs: dict[str, object]) -> None:
    """Negative, float, non-finite amounts and unknown currencies are configuration errors."""
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        Tariff(**kwargs)  # type: ignore[arg-type]


def test_estimate_uses_city_speed() -> None:
    """An estimate for 5 km assumes 25 km/h: 12 minutes."""
    assert TARIFF.estimate(distance_km=5).amount == Decimal("11.60")  # 2.50 + 5.50 + 3.60


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_idempotency_key_is_a_function_of_the_ride(a: str, b: str) -> None:
    """The same ride always gets the same key; different rides different keys."""
    assert idempotency_key(a) == idempotency_key(a)
    assert (idempotency_key(a) == idempotency_key(b)) == (a == b)
    assert len(idempotency_key(a)) == len("ride-charge-") + 32


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, ChargeOutcome.CAPTURED),
        (201, ChargeOutcome.CAPTURED),
        (402, ChargeOutcome.DECLINED),
        (400, ChargeOutcome.DECLINED),
        (409, ChargeOutcome.TRANSIENT),
        (429, ChargeOutcome.TRANSIENT),
        (500, ChargeOutcome.TRANSIENT),
        (503, ChargeOutcome.TRANSIENT),
    ],
)
def test_provider_status_classification(status: int, outcome: ChargeOutcome) -> None:
    """2xx captured; 5xx, 429 and in-flight 409 worth a retry; other 4xx final."""
    assert classify_status(status) is outcome


def test_a_transient_failure_fails_the_payment_at_the_end_of_each_round() -> None:
    """Retrying while the bus redelivers; failed on the delivery that ends a round of
    max_deliveries (the event is dead-lettered then); a replay's round ends the same way."""
    statuses = [status_after_failure(ChargeOutcome.TRANSIENT, n, 5) for n in range(1, 11)]
    failed = [n for n, status in enumerate(statuses, start=1) if status is PaymentStatus.FAILED]
    assert failed == [5, 10]
    assert set(statuses) == {PaymentStatus.RETRYING, PaymentStatus.FAILED}


def test_declined_fails_at_once() -> None:
    """A declined charge is final on its first delivery."""
    assert status_after_failure(ChargeOutcome.DECLINED, 1, 5) is PaymentStatus.FAILED


@pytest.mark.parametrize(
    ("outcome", "failed", "per_round"),
    [
        (ChargeOutcome.CAPTURED, 1, 5),
        (ChargeOutcome.TRANSIENT, 0, 5),
        (ChargeOutcome.TRANSIENT, 1, 0),
    ],
)
def test_nonsense_failures_are_refused(outcome: ChargeOutcome, failed: int, per_round: int) -> None:
    """A capture is no failure; counts start at one."""
    with pytest.raises(ValueError, match=r"failure|delivery"):
        status_after_failure(outcome, failed, per_round)
