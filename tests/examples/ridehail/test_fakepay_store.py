"""fakepay's books on real databases (SQLite and PostgreSQL): charges by key survive a
new process's handle on the database, and four replicas charging one key at once book
one charge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from fakepay.domain import Provider, Tally
from fakepay.store import SqlBooks, metadata
from store_replicas import replica_databases

from corral.sdk import Database

pytestmark = pytest.mark.asyncio
NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Database]]:
    """Four handles on one fakepay database, each with its own pool (as processes have)."""
    async with replica_databases(request.param, tmp_path, metadata, name="fakepay") as databases:
        yield databases


async def pay(db: Database, key: str, amount: str = "12.30") -> tuple[str, bool]:
    made, replayed = await Provider(SqlBooks(db)).charge(
        key=key, amount=Decimal(amount), currency="EUR", reference=f"ride-{key}", now=NOW
    )
    return made.id, replayed


async def test_a_key_charged_before_is_replayed_by_a_fresh_provider(
    replicas: list[Database],
) -> None:
    """What a restart is: a new Provider over the same database replays the first charge
    for its key (same id) instead of charging again, and the tallies carry on."""
    first = await pay(replicas[0], "k1")
    again = await pay(replicas[1], "k1")
    assert (first[1], again) == (False, (first[0], True))
    books = SqlBooks(replicas[2])
    assert [c.id for c in await books.charges("ride-k1")] == [first[0]]
    assert await books.tally() == Tally(attempts=2, failures=0)


async def test_replicas_charging_one_key_at_once_book_one_charge(
    replicas: list[Database],
) -> None:
    """A client retry racing its first attempt, on four processes: one charge, every
    answer is that charge, exactly one of them not a replay."""
    for n in range(5):
        key = f"race-{n}"
        answers = await asyncio.gather(*(pay(db, key) for db in replicas))
        assert len({charge_id for charge_id, _ in answers}) == 1, answers
        assert [replayed for _, replayed in answers].count(False) == 1, answers
    books = SqlBooks(replicas[0])
    assert len(await books.charges()) == 5
    assert (await books.tally()).attempts == 5 * len(replicas)
