"""The fake provider charges once per idempotency key and fails on demand (over books in
memory here; test_fakepay_store.py runs its SQL books on real databases)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fakepay.domain import Charge, Faults, InjectedFailure, KeyReused, MemoryBooks, Provider, Tally

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def provider(faults: Faults | None = None) -> Provider:
    return Provider(MemoryBooks(), faults)


async def charge(provider: Provider, key: str = "k1", amount: str = "12.30") -> tuple[Charge, bool]:
    return await provider.charge(
        key=key, amount=Decimal(amount), currency="EUR", reference="r1", now=NOW
    )


async def test_same_key_replays_the_first_charge() -> None:
    """A retried key returns the original charge, flagged as a replay, and books nothing new."""
    fake = provider()
    first, replayed = await charge(fake)
    again, replayed_again = await charge(fake)
    assert (replayed, replayed_again) == (False, True)
    assert again == first
    assert await fake.books.charges() == [first]


async def test_same_key_different_amount_is_a_conflict() -> None:
    """Reusing a key for another amount is refused."""
    fake = provider()
    await charge(fake)
    with pytest.raises(KeyReused):
        await charge(fake, amount="99.00")


async def test_failures_are_not_remembered_so_a_retry_can_succeed() -> None:
    """fail_next=2: two failures, then the third attempt with the same key charges once."""
    fake = provider(Faults(fail_next=2))
    for _ in range(2):
        with pytest.raises(InjectedFailure):
            await charge(fake)
    _, replayed = await charge(fake)
    assert not replayed
    assert await fake.books.tally() == Tally(attempts=3, failures=2)
    assert len(await fake.books.charges()) == 1


async def test_a_request_racing_one_with_its_key_gets_the_booked_charge() -> None:
    """Two requests with one key, both past the lookup before either booked: the second
    to book is told of the first's charge, as a replay (one charge in the books)."""
    racing = Charge("ch_first", "k1", Decimal("12.30"), "EUR", "r1", NOW)

    class Racing(MemoryBooks):
        async def find(self, key: str) -> Charge | None:
            await self.add(racing)  # the other request books between our lookup and ours
            return None

    books = Racing()
    made, replayed = await charge(Provider(books))
    assert (made, replayed) == (racing, True)
    assert await books.charges() == [racing]


async def test_failure_rate_is_seeded_and_roughly_right() -> None:
    """A 30% failure rate fails about 30% of 2000 distinct charges, reproducibly."""

    async def failures(seed: int) -> int:
        fake = provider(Faults(failure_rate=0.3, seed=seed))
        count = 0
        for i in range(2000):
            try:
                await charge(fake, key=f"k{i}")
            except InjectedFailure:
                count += 1
        return count

    assert await failures(1) == await failures(1)
    assert 520 < await failures(1) < 680


@pytest.mark.parametrize("kwargs", [{"failure_rate": 1.5}, {"fail_next": -1}, {"latency_ms": -5}])
def test_bad_fault_settings(kwargs: dict[str, float]) -> None:
    """Out-of-range fault settings are refused."""
    with pytest.raises(ValueError):  # noqa: PT011
        Faults(**kwargs)  # type: ignore[arg-type]
