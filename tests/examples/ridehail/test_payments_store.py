"""payments' store on real databases, under what several deliveries of one ride.completed
do at once (a redelivery while the first still runs, a second payments replica): one
payment row, one fare, one capture (one payment.captured), and a capture is never undone
by a late failure. Each replica has its own connection pool, as separate processes do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from payments.domain import Money, PaymentStatus, idempotency_key
from payments.store import capture, metadata, open_payment, payments, record_failure
from sqlalchemy import select
from store_replicas import replica_databases

from corral.sdk import Database

pytestmark = pytest.mark.asyncio
NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
RIDES = [f"ride-{i}" for i in range(10)]


@pytest.fixture(params=["sqlite", "postgres"])
async def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Database]]:
    """Four replicas' databases over one payments database, each with its own pool."""
    async with replica_databases(request.param, tmp_path, metadata, name="payments") as databases:
        yield databases


async def open_on(db: Database, ride_id: str, amount: str) -> Money | None:
    fare = Money(Decimal(amount), "EUR")
    key = idempotency_key(ride_id)
    return await open_payment(db, ride_id=ride_id, rider_id="rider", fare=fare, key=key, now=NOW)


def recording(log: list[tuple[str, str]], ride_id: str, topic: str) -> Any:
    """An on_commit hook that notes the event it would write to the outbox."""

    async def run(session: Any, *_: Any) -> None:
        log.append((ride_id, topic))

    return run


async def fail_on(
    db: Database, ride_id: str, log: list[tuple[str, str]], status: PaymentStatus
) -> tuple[int, PaymentStatus] | None:
    """A delivery that did not capture, ending as ``status`` (payment.failed written when
    it is failed)."""
    hook = recording(log, ride_id, "failed")
    return await record_failure(
        db, ride_id, "503", now=NOW, status_of=lambda _: status, on_failed=hook
    )


async def row_of(db: Database, ride_id: str) -> Any:
    async with db.sessionmaker() as session:
        return (await session.execute(select(payments).where(payments.c.ride_id == ride_id))).one()


async def test_first_deliveries_on_every_replica_open_one_payment(replicas: list[Database]) -> None:
    """ride.completed handled by every replica at once (each computing its own fare): no
    handler fails, there is one row, and every replica charges the one stored fare."""
    for ride_id in RIDES:
        fares = await asyncio.gather(
            *(open_on(db, ride_id, f"1{k}.00") for k, db in enumerate(replicas))
        )
        stored = await row_of(replicas[0], ride_id)
        assert fares == [Money(Decimal(stored.amount), "EUR")] * len(replicas), ride_id
        assert stored.status == PaymentStatus.PENDING


async def test_a_payment_is_captured_once(replicas: list[Database]) -> None:
    """Several deliveries get the provider's (idempotent) answer at once: exactly one
    records the capture and writes payment.captured; the others are told it was done."""
    published: list[tuple[str, str]] = []
    for ride_id in RIDES:
        await open_on(replicas[0], ride_id, "12.00")
        hook = recording(published, ride_id, "captured")
        won = await asyncio.gather(
            *(
                capture(db, ride_id, f"ch_{k}", now=NOW, on_commit=hook)
                for k, db in enumerate(replicas)
            )
        )
        assert won.count(True) == 1, (ride_id, won)
        row = await row_of(replicas[0], ride_id)
        assert row.status == PaymentStatus.CAPTURED
        assert row.charge_id == f"ch_{won.index(True)}"
        assert await open_on(replicas[1], ride_id, "12.00") is None  # a later redelivery
    assert sorted(published) == [(ride_id, "captured") for ride_id in sorted(RIDES)]


async def test_a_late_failure_never_undoes_a_capture(replicas: list[Database]) -> None:
    """One delivery captures while others record failed attempts at the same moment: the
    payment ends captured whatever the order, and no payment.failed is written after the
    capture."""
    events: list[tuple[str, str]] = []
    for ride_id in RIDES:
        await open_on(replicas[0], ride_id, "12.00")
        captured = recording(events, ride_id, "captured")
        await asyncio.gather(
            capture(replicas[0], ride_id, "ch_1", now=NOW, on_commit=captured),
            fail_on(replicas[1], ride_id, events, PaymentStatus.FAILED),
            fail_on(replicas[2], ride_id, events, PaymentStatus.RETRYING),
            fail_on(replicas[3], ride_id, events, PaymentStatus.FAILED),
        )
        row = await row_of(replicas[0], ride_id)
        assert row.status == PaymentStatus.CAPTURED, ride_id
        assert row.charge_id == "ch_1"
        mine = [topic for r, topic in events if r == ride_id]
        assert "failed" not in mine[mine.index("captured") :], (ride_id, mine)


async def test_concurrent_failures_count_every_delivery(replicas: list[Database]) -> None:
    """Failing deliveries on every replica at once each count one attempt (the status is
    decided on the count this delivery made, so the round's end is seen exactly once),
    and payment.failed is written only with the failed status."""
    events: list[tuple[str, str]] = []
    for ride_id in RIDES:
        await open_on(replicas[0], ride_id, "12.00")
        seen: list[int] = []

        def status_of(attempts: int, seen: list[int] = seen) -> PaymentStatus:
            seen.append(attempts)
            return PaymentStatus.FAILED if attempts == len(replicas) else PaymentStatus.RETRYING

        results = await asyncio.gather(
            *(
                record_failure(
                    db,
                    ride_id,
                    "503",
                    now=NOW,
                    status_of=status_of,
                    on_failed=recording(events, ride_id, "failed"),
                )
                for db in replicas
            )
        )
        assert sorted(seen) == list(range(1, len(replicas) + 1)), (ride_id, seen)
        assert sorted(r[1] for r in results if r) == sorted(
            [PaymentStatus.FAILED] + [PaymentStatus.RETRYING] * (len(replicas) - 1)
        )
        row = await row_of(replicas[0], ride_id)
        assert (row.attempts, row.status) == (len(replicas), PaymentStatus.FAILED)
    assert sorted(events) == [(ride_id, "failed") for ride_id in sorted(RIDES)]
