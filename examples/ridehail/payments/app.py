"""payments: on ride.completed, compute the fare and charge it through the provider once.

The charge for a ride always carries the same Idempotency-Key (domain.idempotency_key),
and the payments table has one row per ride, so neither a retry, a redelivered
ride.completed nor a second replica can charge a ride twice. Transient provider failures
are retried here with jittered backoff (domain.RetryPolicy); when those run out the
handler raises, the event is redelivered with the topic's backoff, and after its last
delivery it lands in the dead-letter stream with the payment marked ``failed``: an
operator replays it once the provider is back (``corral events dlq replay``).

Deliveries of one ride.completed may overlap; the store (store.py) makes the row, the
capture and payment.captured happen once, and a late failed attempt never marks a
captured payment failed (nor sends payment.failed after payment.captured).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Query
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import events as ev
from contracts.calls import Calls
from contracts.identity import CallerDep
from corral.sdk import Problem, Service, ServiceSettings
from corral.sdk.client import ServiceCallError
from payments import store
from payments.domain import (
    ChargeOutcome,
    GiveUp,
    PaymentStatus,
    RetryPolicy,
    Tariff,
    classify_status,
    idempotency_key,
)
from payments.store import metadata, payments


class Settings(ServiceSettings):
    fare_base: Decimal = Decimal("2.50")
    fare_per_km: Decimal = Decimal("1.10")
    fare_per_minute: Decimal = Decimal("0.30")
    fare_minimum: Decimal = Decimal("5.00")
    fare_currency: str = "EUR"
    charge_attempts: int = Field(default=4, ge=1)
    charge_backoff_initial_s: float = Field(default=0.2, ge=0)
    charge_backoff_cap_s: float = Field(default=2.0, ge=0)


class ChargeFailed(Exception):
    """The provider did not take the charge this time; the event will be redelivered."""


svc = Service("payments", settings=Settings, metadata=metadata, title="ridehail payments")
provider = Calls(svc, "fakepay")


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


@svc.events.subscribe("ride.completed")
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

    policy = RetryPolicy(
        attempts=svc.settings.charge_attempts,
        initial_s=svc.settings.charge_backoff_initial_s,
        cap_s=svc.settings.charge_backoff_cap_s,
    )
    attempt = 0
    while True:
        attempt += 1
        body = {"amount": str(fare.amount), "currency": fare.currency, "reference": event.ride_id}
        try:
            response = await provider().post(
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
            # Either way done: it returns False when another delivery recorded this
            # capture (and published its event) first.
            await store.capture(
                svc.db,
                event.ride_id,
                captured.charge_id,
                now=datetime.now(UTC),
                on_commit=_publish_captured(captured),
            )
            return
        decision = policy.after_failure(attempt, outcome)
        give_up = isinstance(decision, GiveUp)
        recorded = await store.record_attempt(
            svc.db,
            event.ride_id,
            PaymentStatus.FAILED if give_up else PaymentStatus.RETRYING,
            error,
            now=datetime.now(UTC),
            # payment.failed in the transaction that marks it failed (never after a capture)
            on_commit=_publish_failed(event.ride_id, f"{decision.reason} ({error})")
            if isinstance(decision, GiveUp)
            else None,
        )
        if recorded is None:
            return  # another delivery captured it meanwhile
        if isinstance(decision, GiveUp):
            if outcome is ChargeOutcome.DECLINED:
                return  # final: nothing a redelivery could change
            raise ChargeFailed(f"ride {event.ride_id}: {decision.reason} ({error})")
        await asyncio.sleep(decision.delay_s)


def _publish_captured(captured: ev.PaymentCaptured) -> store.OnCommit:
    async def publish(session: AsyncSession) -> None:
        await svc.events.publish(
            "payment.captured", captured, key=captured.ride_id, session=session
        )

    return publish


def _publish_failed(ride_id: str, reason: str) -> store.OnAttempt:
    async def publish(session: AsyncSession, attempts: int) -> None:
        failed = ev.PaymentFailed(ride_id=ride_id, reason=reason, attempts=attempts)
        await svc.events.publish("payment.failed", failed, key=ride_id, session=session)

    return publish
