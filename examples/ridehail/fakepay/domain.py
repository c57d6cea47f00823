"""A fake payment provider that behaves like a real one where it matters.

- Charges are idempotent by key, as Stripe's are: the same key and amount returns the
  first charge again (``replayed=True``); the same key with a different amount is a
  conflict. Only a *successful* first attempt is remembered: a key whose attempt failed
  may be retried.
- Failure injection, changeable at run time: a failure rate (random, seeded), a number of
  next calls to fail, and an artificial latency. Tests and the simulator use them to
  prove that retries never double-charge.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


class KeyReused(Exception):
    """The idempotency key was used before with a different request."""


class InjectedFailure(Exception):
    """The provider is configured to fail this call."""


@dataclass(frozen=True, slots=True)
class Charge:
    id: str
    idempotency_key: str
    amount: Decimal
    currency: str
    reference: str
    created_at: datetime


@dataclass(slots=True)
class Faults:
    failure_rate: float = 0.0
    fail_next: int = 0
    latency_ms: float = 0.0
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be within [0, 1]")
        if self.fail_next < 0 or self.latency_ms < 0:
            raise ValueError("fail_next and latency_ms cannot be negative")
        self._rng = random.Random(self.seed)  # fault injection, not crypto

    def should_fail(self) -> bool:
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        return self._rng.random() < self.failure_rate


class Provider:
    """The provider's books: charges by idempotency key."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.charges: dict[str, Charge] = {}
        self.attempts = 0
        self.failures = 0

    def charge(
        self, *, key: str, amount: Decimal, currency: str, reference: str, now: datetime
    ) -> tuple[Charge, bool]:
        """Charge once per key; returns ``(charge, replayed)``."""
        self.attempts += 1
        existing = self.charges.get(key)
        if existing is not None:
            if existing.amount != amount or existing.currency != currency:
                raise KeyReused(
                    f"key {key} was used for {existing.amount} {existing.currency}, "
                    f"not {amount} {currency}"
                )
            return existing, True
        if self.faults.should_fail():
            self.failures += 1
            raise InjectedFailure("injected failure")
        if amount <= 0:
            raise ValueError("amount must be positive")
        charge = Charge(f"ch_{uuid.uuid4().hex[:20]}", key, amount, currency, reference, now)
        self.charges[key] = charge
        return charge, False
