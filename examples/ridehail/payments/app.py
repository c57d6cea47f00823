"""payments: on ride.completed, compute the fare and charge it through the provider once.

The charge for a ride always carries the same Idempotency-Key (domain.idempotency_key),
and the payments table has one row per ride, so neither a retry, a redelivered
ride.completed nor a second replica can charge a ride twice. Each delivery asks the
provider once, through ``svc.client("fakepay")``, whose policy (the manifest's
``resilience:``) retries transient failures within the delivery; when it still fails the
handler raises and the bus redelivers the event with the topic's backoff. The delivery
that ends a round of ``max_deliveries`` marks the payment ``failed`` (payment.failed) and
the event lands in the dead letters: an operator replays it once the provider is back
(``corral events dlq replay``). No retry loop of our own: on top of the client's it made
up to 12 HTTP attempts per delivery, and hid the failures from the bus's backoff.

Deliveries of one ride.completed may overlap; the store (store.py) makes the row, the
capture and payment.captured happen once, and a late failed attempt never marks a
captured payment failed (nor sends payment.failed after payment.captured).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import events as ev
from contracts.identity import CallerDep
from corral.sdk import Problem, Service, ServiceSettings
from corral.sdk.client import ServiceCallError
from payments import store
from payments.domain import (
    ChargeOutcome,
    Tariff,
    classify_status,
    idempotency_key,
    status_after_failure,
)
from payments.store import metadata, payments


class Settings(ServiceSettings):
    fare_base: Decimal = Decimal("2.50")
    fare_per_km: Decimal = Decimal("1.10")
    fare_per_minute: Decimal = Decimal("0.30")
    fare_minimum: Decimal = Decimal("5.00")
    fare_currency: str = "EUR"


class ChargeFailed(Exception):
    """The provider did not take the charge this time; the event will be redelivered."""


svc = Service("payments", settings=Settings, metadata=metadata, title="ridehail payments")
PROVIDER = "fakepay"
COMPLETED = "ride.completed"


def tariff() -> Tariff:
    s = svc.settings
    return Tariff(
        base=s.fare_base,
        per_km=s.fare_per_km,
        per_minute=s.fare_per_minute,
        minimum=s.fare_minimum,
        currency=s.fare_currency,
    )


@svc.get("/estimate")
async def estimate(distance_km: Annotated[float, Query(ge=0, le=1000)]) -> dict[str, str]:
    """A fare estimate for a straight-line distance (called by rides)."""
    money = tariff().estimate(distance_km=distance_km)
    return {"amount": str(money.amount), "currency": money.currency}


@svc.get("/payments")
async def get_payment(ride_id: str, caller: CallerDep) -> dict[str, Any]:
    """The payment of one ride, to its rider (or an admin)."""
    async with svc.db.sessionmaker() as session:
        row = (await session.execute(select(payments).where(payments.c.ride_id == ride_id))).first()
    if row is None or (caller.role != "admin" and row.rider_id != caller.id):
        raise Problem(404, "No such payment", detail=f"no payment for ride {ride_id} yet")
    return {
        "ride_id": row.ride_id,
        "amount": row.amount,
        "currency": row.currency,
        "status": row.status,
        "attempts": row.attempts,
        "charge_id": row.charge_id,
    }


@svc.get("/payments/all")
async def all_payments(caller: CallerDep) -> list[dict[str, Any]]:
    """Every payment (admins; the simulator's invariant checks)."""
    if caller.role != "admin":
        raise Problem(403, "Forbidden", detail="admins only")
    async with svc.db.sessionmaker() as session:
        rows = (await session.execute(select(payments))).all()
    return [
        {"ride_id": r.ride_id, "amount": r.amount, "status": r.status, "attempts": r.attempts}
        for r in rows
    ]


@svc.events.subscribe(COMPLETED)
async def on_completed(event: ev.RideCompleted) -> None:
    now = datetime.now(UTC)
    fare = tariff().fare(distance_km=event.distance_km, duration_s=event.duration_s)
    key = idempotency_key(event.ride_id)
    opened = await store.open_payment(
        svc.db, ride_id=event.ride_id, rider_id=event.rider_id, fare=fare, key=key, now=now
    )
    if opened is None:
        return  # a redelivery after the capture committed
    fare = opened  # the first computed fare, whichever delivery computed it
    body = {"amount": str(fare.amount), "currency": fare.currency, "reference": event.ride_id}
    try:
        response = await svc.client(PROVIDER).post(
            "/charges", json=body, headers={"Idempotency-Key": key}
        )
        outcome, error = classify_status(response.status), f"provider {response.status}"
    except ServiceCallError as exc:
        response, outcome, error = None, ChargeOutcome.TRANSIENT, f"{exc.reason}: {exc}"
    if outcome is ChargeOutcome.CAPTURED:
        assert response is not None
        captured = ev.PaymentCaptured(
            ride_id=event.ride_id,
            amount=str(fare.amount),
            currency=fare.currency,
            charge_id=str(response.json()["id"]),
        )
        # Either way done: it returns False when another delivery recorded this capture
        # (and published its event) first.
        await store.capture(
            svc.db,
            event.ride_id,
            captured.charge_id,
            now=datetime.now(UTC),
            on_commit=_publish_captured(captured),
        )
        return
    per_round = svc.events.topology.topic(COMPLETED).max_deliveries
    recorded = await store.record_failure(
        svc.db,
        event.ride_id,
        error,
        now=datetime.now(UTC),
        status_of=lambda failed: status_after_failure(outcome, failed, per_round),
        # payment.failed in the transaction that marks it failed (never after a capture)
        on_failed=_publish_failed(event.ride_id, outcome, error),
    )
    if recorded is None:
        return  # another delivery captured it meanwhile
    if outcome is ChargeOutcome.DECLINED:
        return  # final: nothing a redelivery could change
    attempts, status = recorded
    raise ChargeFailed(
        f"ride {event.ride_id}: the provider did not take the charge ({error}); "
        f"payment {status} after {attempts} failed deliveries"
    )


def _publish_captured(captured: ev.PaymentCaptured) -> store.OnCommit:
    async def publish(session: AsyncSession) -> None:
        await svc.events.publish(
            "payment.captured", captured, key=captured.ride_id, session=session
        )

    return publish


def _publish_failed(ride_id: str, outcome: ChargeOutcome, error: str) -> store.OnAttempt:
    """payment.failed, written to the outbox in the transaction that marks it failed."""

    async def publish(session: AsyncSession, attempts: int) -> None:
        reason = (
            f"declined by the provider ({error})"
            if outcome is ChargeOutcome.DECLINED
            else f"provider still failing after {attempts} deliveries ({error})"
        )
        failed = ev.PaymentFailed(ride_id=ride_id, reason=reason, attempts=attempts)
        await svc.events.publish("payment.failed", failed, key=ride_id, session=session)

    return publish
