"""Fares, idempotent charges and what to do when the provider fails.

- :class:`Tariff` turns distance and time into a fare: ``base + per_km * km +
  per_minute * minutes``, never below ``minimum``, in :class:`~decimal.Decimal` rounded
  half-even to the currency's minor unit. Floats never touch money.
- :func:`idempotency_key` is derived from the ride id alone, so every attempt to charge a
  ride (a retry, a redelivered ``ride.completed``, a second payments replica) carries the
  same key, and the provider charges it once. The payments table also holds one row per
  ride (``ride_id`` unique): two safety nets, one on each side of the network.
- :func:`classify_status`: what the provider's answer means. A transient failure (the
  provider timed out or answered 5xx/429) is retried, by the service client's policy
  within one delivery and by the bus's redeliveries after it; a permanent refusal (card
  declined) ends the payment as ``failed`` at once. :func:`status_after_failure` says
  when retries are over: after a round of as many failed deliveries as the bus makes
  before it dead-letters the event, for an operator to replay.

States: ``pending -> captured`` or ``pending -> retrying -> ... -> captured | failed``
(a replayed event may take a ``failed`` payment back to ``retrying``, then ``captured``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

MINOR_UNITS = {"EUR": 2, "USD": 2, "GBP": 2, "JPY": 0, "CHF": 2}


class PaymentStatus(StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    CAPTURED = "captured"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (PaymentStatus.CAPTURED, PaymentStatus.FAILED)


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit (half-even, as banks do)."""
    places = MINOR_UNITS.get(currency)
    if places is None:
        raise ValueError(f"unknown currency {currency!r}")
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class Tariff:
    base: Decimal = Decimal("2.50")
    per_km: Decimal = Decimal("1.10")
    per_minute: Decimal = Decimal("0.30")
    minimum: Decimal = Decimal("5.00")
    currency: str = "EUR"

    def __post_init__(self) -> None:
        for name in ("base", "per_km", "per_minute", "minimum"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(f"tariff {name} must be a non-negative Decimal, got {value!r}")
        quantize(Decimal(0), self.currency)  # rejects unknown currencies

    def fare(self, *, distance_km: float | Decimal, duration_s: float | Decimal) -> Money:
        """The fare for a ride of this distance and duration."""
        km = Decimal(str(distance_km))
        minutes = Decimal(str(duration_s)) / 60
        if km < 0 or minutes < 0:
            raise ValueError("distance and duration cannot be negative")
        raw = self.base + self.per_km * km + self.per_minute * minutes
        return Money(quantize(max(raw, self.minimum), self.currency), self.currency)

    def estimate(self, *, distance_km: float, speed_kmh: float = 25.0) -> Money:
        """A fare estimate before the ride: the straight-line distance at city speed."""
        return self.fare(distance_km=distance_km, duration_s=distance_km / speed_kmh * 3600)


def idempotency_key(ride_id: str) -> str:
    """The one key every charge attempt for this ride carries (stable, opaque, short)."""
    digest = hashlib.sha256(f"ridehail:charge:{ride_id}".encode()).hexdigest()[:32]
    return f"ride-charge-{digest}"


class ChargeOutcome(StrEnum):
    CAPTURED = "captured"
    TRANSIENT = "transient"  # worth retrying: timeout, connection error, 5xx, 429
    DECLINED = "declined"  # the provider said no for good: retrying changes nothing


def classify_status(status: int) -> ChargeOutcome:
    """What a provider's HTTP status means for the charge."""
    if 200 <= status < 300:
        return ChargeOutcome.CAPTURED
    if status in (408, 409, 425, 429) or status >= 500:
        # 409 here: the provider is still processing the same key; ask again.
        return ChargeOutcome.TRANSIENT
    return ChargeOutcome.DECLINED


def status_after_failure(
    outcome: ChargeOutcome, failed_deliveries: int, deliveries_per_round: int
) -> PaymentStatus:
    """The payment's status once ``failed_deliveries`` deliveries of its ride.completed
    (this one included) did not capture it: ``failed`` when the provider declined, or when
    this delivery ends a round of ``deliveries_per_round`` (the bus's ``max_deliveries``:
    the event now goes to the dead letters, and a replay starts a new round); otherwise
    ``retrying`` (the bus redelivers)."""
    if outcome is ChargeOutcome.CAPTURED:
        raise ValueError("a captured charge is not a failure")
    if deliveries_per_round < 1 or failed_deliveries < 1:
        raise ValueError("at least one delivery per round, and this one failed")
    if outcome is ChargeOutcome.DECLINED or failed_deliveries % deliveries_per_round == 0:
        return PaymentStatus.FAILED
    return PaymentStatus.RETRYING
