"""A fake payment provider that behaves like a real one where it matters.

- Charges are idempotent by key, as Stripe's are: the same key and amount returns the
  first charge again (``replayed=True``); the same key with a different amount is a
  conflict. Only a *successful* first attempt is remembered: a key whose attempt failed
  may be retried.
- Its books (charges by key, attempt and failure tallies) live in :class:`Books`: its own
  database in the service, as a real provider's do. A provider that forgot its keys when
  it restarts would charge a retried ride a second time, and "charged exactly once" could
  not be checked across a restart.
- Failure injection, changeable at run time: a failure rate (random, seeded), a number of
  next calls to fail, and an artificial latency. Tests and the simulator use them to
  prove that retries never double-charge. Faults are the provider's mood, not its books:
  they live in memory and start from the settings again after a restart.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol


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


@dataclass(frozen=True, slots=True)
class Tally:
    attempts: int = 0
    """Every charge request, replays and failures included."""
    failures: int = 0
    """Requests failed by an injected fault."""


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


class Books(Protocol):
    """Where the provider's charges and tallies are kept; each method is atomic."""

    async def find(self, key: str) -> Charge | None:
        """The charge made with this idempotency key, if any."""
        ...

    async def add(self, charge: Charge) -> Charge:
        """Book ``charge`` unless its key has one already; returns the booked charge (the
        given one, or the one a concurrent request with the same key booked first)."""
        ...

    async def count(self, *, failed: bool) -> None:
        """One more attempt (and, when ``failed``, one more failure)."""
        ...

    async def tally(self) -> Tally: ...

    async def charges(self, reference: str | None = None) -> list[Charge]:
        """Every charge, or those for one reference, oldest first."""
        ...


class MemoryBooks:
    """:class:`Books` in dicts, for unit tests (forgotten with the process)."""

    def __init__(self) -> None:
        self.booked: dict[str, Charge] = {}
        self.counted = Tally()

    async def find(self, key: str) -> Charge | None:
        return self.booked.get(key)

    async def add(self, charge: Charge) -> Charge:
        return self.booked.setdefault(charge.idempotency_key, charge)

    async def count(self, *, failed: bool) -> None:
        self.counted = Tally(self.counted.attempts + 1, self.counted.failures + int(failed))

    async def tally(self) -> Tally:
        return self.counted

    async def charges(self, reference: str | None = None) -> list[Charge]:
        found = [c for c in self.booked.values() if reference in (None, c.reference)]
        return sorted(found, key=lambda c: (c.created_at, c.id))


class Provider:
    """Charges once per idempotency key, over its :class:`Books`."""

    def __init__(self, books: Books, faults: Faults | None = None) -> None:
        self.books = books
        self.faults = faults or Faults()

    async def charge(
        self, *, key: str, amount: Decimal, currency: str, reference: str, now: datetime
    ) -> tuple[Charge, bool]:
        """Charge once per key; returns ``(charge, replayed)``."""
        if amount <= 0:
            raise ValueError("amount must be positive")
        existing = await self.books.find(key)
        if existing is not None:
            await self.books.count(failed=False)
            return _same_request(existing, amount, currency), True
        if self.faults.should_fail():
            await self.books.count(failed=True)
            raise InjectedFailure("injected failure")
        await self.books.count(failed=False)
        made = Charge(f"ch_{uuid.uuid4().hex[:20]}", key, amount, currency, reference, now)
        booked = await self.books.add(made)
        if booked.id != made.id:  # a concurrent request with this key booked first
            return _same_request(booked, amount, currency), True
        return booked, False


def _same_request(charge: Charge, amount: Decimal, currency: str) -> Charge:
    if charge.amount != amount or charge.currency != currency:
        raise KeyReused(
            f"key {charge.idempotency_key} was used for {charge.amount} {charge.currency}, "
            f"not {amount} {currency}"
        )
    return charge
