"""fakepay's own database: the charges by idempotency key, and the attempt tallies.

The key is the primary key, and a charge is booked with ``INSERT ... ON CONFLICT DO
NOTHING``: two requests with one key at once (a client retry racing its first attempt)
book one charge, and the loser reads the winner's. The tallies are counters updated in
place, one row per name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, select, update

from contracts.sql import insert_new
from corral.sdk import Database
from fakepay.domain import Charge, Tally

metadata = MetaData()

charges = Table(
    "charges",
    metadata,
    Column("idempotency_key", String(100), primary_key=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("amount", String(20), nullable=False),  # Decimal as text: exact on both engines
    Column("currency", String(3), nullable=False),
    Column("reference", String(100), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

tallies = Table(
    "tallies",
    metadata,
    Column("name", String(20), primary_key=True),  # attempts | failures
    Column("count", Integer, nullable=False),
)


def _charge(row: Any) -> Charge:
    at: datetime = row.created_at
    return Charge(
        id=row.id,
        idempotency_key=row.idempotency_key,
        amount=Decimal(row.amount),
        currency=row.currency,
        reference=row.reference,
        created_at=at if at.tzinfo is not None else at.replace(tzinfo=UTC),
    )


class SqlBooks:
    """:class:`fakepay.domain.Books` in the service's database (svc.db)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def find(self, key: str) -> Charge | None:
        async with self._db.sessionmaker() as session:
            row = (
                await session.execute(select(charges).where(charges.c.idempotency_key == key))
            ).first()
        return None if row is None else _charge(row)

    async def add(self, charge: Charge) -> Charge:
        async with self._db.transaction() as session:
            await session.execute(
                insert_new(session, charges).values(
                    idempotency_key=charge.idempotency_key,
                    id=charge.id,
                    amount=str(charge.amount),
                    currency=charge.currency,
                    reference=charge.reference,
                    created_at=charge.created_at,
                )
            )
            row = (
                await session.execute(
                    select(charges).where(charges.c.idempotency_key == charge.idempotency_key)
                )
            ).one()
        return _charge(row)

    async def count(self, *, failed: bool) -> None:
        names = ("attempts", "failures") if failed else ("attempts",)
        async with self._db.transaction() as session:
            for name in names:
                await session.execute(insert_new(session, tallies).values(name=name, count=0))
                await session.execute(
                    update(tallies).where(tallies.c.name == name).values(count=tallies.c.count + 1)
                )

    async def tally(self) -> Tally:
        async with self._db.sessionmaker() as session:
            rows = await session.execute(select(tallies.c.name, tallies.c.count))
            counts: dict[str, int] = {name: count for name, count in rows}
        return Tally(attempts=counts.get("attempts", 0), failures=counts.get("failures", 0))

    async def charges(self, reference: str | None = None) -> list[Charge]:
        query = select(charges).order_by(charges.c.created_at, charges.c.id)
        if reference is not None:
            query = query.where(charges.c.reference == reference)
        async with self._db.sessionmaker() as session:
            return [_charge(row) for row in await session.execute(query)]
