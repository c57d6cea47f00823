"""payments' own database: one row per ride (the primary key is the ride id).

Several deliveries of one ride.completed may run at once (a redelivery while the first
still works, a second replica), so every change is one statement that decides by itself,
never "read the row, then write": the row is created with ``INSERT ... ON CONFLICT DO
NOTHING``, and a payment leaves ``captured`` for nothing (``WHERE status <> 'captured'``).
On SQLite writers are serialized anyway; on PostgreSQL (READ COMMITTED) a read is stale
by the time the write runs, while a conditional UPDATE waits for the other writer and
re-checks its WHERE on the row it committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, select, update

from contracts.sql import insert_new
from corral.sdk import Database
from payments.domain import Money, PaymentStatus

metadata = MetaData()

payments = Table(
    "payments",
    metadata,
    Column("ride_id", String(36), primary_key=True),  # one payment per ride, ever
    Column("rider_id", String(36), nullable=False),
    Column("amount", String(20), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(10), nullable=False),
    Column("idempotency_key", String(64), nullable=False, unique=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("charge_id", String(64), nullable=True),
    Column("last_error", String(300), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

OnCommit = Callable[[Any], Awaitable[None]]
"""Runs inside the transaction that made the change, with its session (the outbox)."""

OnAttempt = Callable[[Any, int], Awaitable[None]]
"""The same, for a recorded attempt: with the session and the payment's attempts."""


async def open_payment(
    db: Database, *, ride_id: str, rider_id: str, fare: Money, key: str, now: datetime
) -> Money | None:
    """The ride's payment, created ``pending`` on first sight; returns the fare to charge
    (the first one computed), or None when the ride is already paid."""
    async with db.transaction() as session:
        await session.execute(
            insert_new(session, payments).values(
                ride_id=ride_id,
                rider_id=rider_id,
                amount=str(fare.amount),
                currency=fare.currency,
                status=str(PaymentStatus.PENDING),
                idempotency_key=key,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )
        row = (
            await session.execute(
                select(payments.c.amount, payments.c.currency, payments.c.status).where(
                    payments.c.ride_id == ride_id
                )
            )
        ).one()
    if row.status == PaymentStatus.CAPTURED:
        return None
    return Money(Decimal(row.amount), row.currency)


async def record_failure(
    db: Database,
    ride_id: str,
    error: str | None,
    *,
    now: datetime,
    status_of: Callable[[int], PaymentStatus],
    on_failed: OnAttempt | None = None,
) -> tuple[int, PaymentStatus] | None:
    """A delivery that did not capture: one more failed attempt, and the status
    ``status_of(attempts)`` decides (``retrying`` or ``failed``). Returns both, or None
    when the payment was captured meanwhile (nothing recorded). ``on_failed`` runs in the
    same transaction when the status is ``failed`` (payment.failed goes out with it).

    The count and the status are one transaction: its first statement locks the row
    (PostgreSQL) or the database (SQLite), so two failing deliveries count 1 and 2,
    never 1 and 1."""
    async with db.transaction() as session:
        attempts: int | None = await session.scalar(
            update(payments)
            .where(payments.c.ride_id == ride_id, payments.c.status != PaymentStatus.CAPTURED)
            .values(
                attempts=payments.c.attempts + 1,
                last_error=error[:300] if error else None,
                updated_at=now,
            )
            .returning(payments.c.attempts)
        )
        if attempts is None:
            return None
        status = status_of(attempts)
        await session.execute(
            update(payments).where(payments.c.ride_id == ride_id).values(status=str(status))
        )
        if status is PaymentStatus.FAILED and on_failed is not None:
            await on_failed(session, attempts)
        return attempts, status


async def capture(
    db: Database, ride_id: str, charge_id: str, *, now: datetime, on_commit: OnCommit | None = None
) -> bool:
    """The provider took the charge: the payment is ``captured``. True for exactly one
    caller (who runs ``on_commit``: payment.captured goes out once); False when another
    delivery recorded the capture first."""
    async with db.transaction() as session:
        captured = await session.scalar(
            update(payments)
            .where(payments.c.ride_id == ride_id, payments.c.status != PaymentStatus.CAPTURED)
            .values(
                status=str(PaymentStatus.CAPTURED),
                charge_id=charge_id,
                attempts=payments.c.attempts + 1,
                last_error=None,
                updated_at=now,
            )
            .returning(payments.c.ride_id)
        )
        if captured is None:
            return False
        if on_commit is not None:
            await on_commit(session)
    return True
