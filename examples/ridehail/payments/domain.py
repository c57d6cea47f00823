"""Fares, idempotent charges and what to do when the provider fails.

- :class:`Tariff` turns distance and time into a fare: ``base + per_km * km +
  per_minute * minutes``, never below ``minimum``, in :class:`~decimal.Decimal` rounded
  half-even to the currency's minor unit. Floats never touch money.
- :func:`idempotency_key` is derived from the ride id alone, so every attempt to charge a
  ride (a retry, a redelivered ``ride.completed``, a second payments replica) carries the
  same key, and the provider charges it once. The payments table also holds one row per
  ride (``ride_id`` unique): two safety nets, one on each side of the network.
- :class:`RetryPolicy`: exponential backoff with full jitter for transient failures (the
  provider timed out or answered 5xx/429); a permanent refusal (card declined) or the last
  attempt ends the payment as ``failed``, and the event goes to the dead-letter stream for
  an operator.

States: ``pending -> captured`` or ``pending -> retrying -> ... -> captured | failed``.
"""

from __future__ import annotations

import hashlib
import random
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


@dataclass(frozen=True, slots=True)
class Retry:
    delay_s: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` tries in all; delays ``uniform(0, min(cap, initial * 2**n))``."""

    attempts: int = 6
    initial_s: float = 0.2
    cap_s: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.initial_s < 0 or self.cap_s < self.initial_s:
            raise ValueError("attempts >= 1 and 0 <= initial_s <= cap_s")

    def after_failure(
        self, attempt: int, outcome: ChargeOutcome, *, rng: random.Random | None = None
    ) -> Retry | GiveUp:
        """``attempt`` (1-based) failed with ``outcome``: wait and retry, or give up."""
        if outcome is ChargeOutcome.CAPTURED:
            raise ValueError("a captured charge is not a failure")
        if outcome is ChargeOutcome.DECLINED:
            return GiveUp("declined by the provider")
        if attempt >= self.attempts:
            return GiveUp(f"provider still failing after {attempt} attempts")
        ceiling = min(self.cap_s, self.initial_s * 2 ** (attempt - 1))
        return Retry((rng or random).uniform(0, ceiling))  # jitter, not crypto
