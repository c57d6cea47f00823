"""rides: ride requests and their lifecycle (domain.py), the rider's and driver's API.

Lifecycle events leave through the outbox in the same transaction as the state change;
matching's verdicts and payments' results come back as events. Two synchronous calls,
each degrading gracefully: the fare estimate from payments (a ride is created without
it when payments is slow or down) and the driven distance from tracking at completion
(the straight line between pickup and dropoff when tracking is down).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import events as ev
from contracts.geo import Position
from contracts.identity import Caller, CallerDep, require
from contracts.sql import answer_503_while_the_database_is_away
from corral.sdk import DbReadSession, DbSession, Problem, Service, ServiceSettings
from rides import store
from rides.domain import (
    SYSTEM,
    Action,
    Actor,
    IllegalTransition,
    NotAllowed,
    Ride,
    RideError,
    RideNotFound,
    RideStatus,
    Role,
    apply,
    authorize,
    check_visible,
    deadlines,
    in_state_since,
    new_ride,
)


class Settings(ServiceSettings):
    """The timeouts of a vanished driver (domain.deadlines, README "A driver who
    vanishes"), each counted from when the ride entered the state."""

    match_accept_timeout_s: float = Field(default=60.0, gt=0)
    """Matched, not set off (``arrive``) by then: reassigned."""
    pickup_timeout_s: float = Field(default=900.0, gt=0)
    """On the way (``driver_arriving``), not picked up (``start``) by then: reassigned."""
    max_ride_s: float = Field(default=14_400.0, gt=0)
    """In progress, not completed by then: cancelled as the driver lost, never charged."""
    release_sweep_interval_s: float = Field(default=1.0, gt=0)


svc = Service("rides", settings=Settings, metadata=store.metadata, title="ridehail rides")
answer_503_while_the_database_is_away(svc)  # a database outage: 503 + Retry-After, not 500


class RideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pickup: Position
    dropoff: Position


class RideView(BaseModel):
    id: str
    status: str
    rider_id: str
    driver_id: str | None
    pickup: Position
    dropoff: Position
    requested_at: datetime
    matched_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    ended_reason: str | None
    fare_estimate: str | None
    fare: str | None
    currency: str | None
    payment_status: str | None
    distance_km: float | None
    duration_s: float | None


def view(ride: Ride, row: Any | None = None) -> RideView:
    return RideView(
        id=ride.id,
        status=str(ride.status),
        rider_id=ride.rider_id,
        driver_id=ride.driver_id,
        pickup=ride.pickup,
        dropoff=ride.dropoff,
        requested_at=ride.requested_at,
        matched_at=ride.matched_at,
        started_at=ride.started_at,
        completed_at=ride.completed_at,
        ended_reason=ride.ended_reason,
        fare_estimate=ride.fare_estimate,
        fare=getattr(row, "fare", None),
        currency=ride.currency,
        payment_status=getattr(row, "payment_status", None),
        distance_km=ride.distance_km,
        duration_s=ride.duration_s,
    )


def actor(caller: Caller) -> Actor:
    return Actor(caller.id, Role(caller.role))


def problem(exc: RideError) -> Problem:
    match exc:
        case RideNotFound():
            return Problem(404, "No such ride", detail=str(exc))
        case NotAllowed():
            return Problem(403, "Forbidden", detail=str(exc))
        case IllegalTransition():
            return Problem(409, "Illegal transition", detail=str(exc), status_now=str(exc.status))
    return Problem(400, "Bad request", detail=str(exc))


async def fare_estimate(ride_km: float) -> tuple[str | None, str | None]:
    """payments' estimate, or (None, None) when it cannot answer in time."""
    response = await svc.client("payments").get(
        "/estimate", params={"distance_km": f"{ride_km:.3f}"}, fallback=lambda exc: None
    )
    if response is None or response.status_code != 200:
        svc.log.info("fare estimate unavailable; ride created without it")
        return None, None
    body = response.json()
    return str(body["amount"]), str(body["currency"])


async def driven_km(ride_id: str, driver: Caller) -> float | None:
    """Distance along tracking's recorded track, or None (straight line) when unknown.
    Asked with the driver's own token (svc.client forwards it): tracking answers only
    the ride's own driver."""
    response = await svc.client("tracking").get(
        f"/rides/{ride_id}/distance", fallback=lambda exc: None
    )
    if response is None or response.status_code != 200:
        return None
    km = response.json().get("distance_km")
    return float(km) if km is not None else None


@svc.post("/rides", status_code=201)
async def request_ride(body: RideRequest, caller: CallerDep, session: DbSession) -> RideView:
    """A rider asks for a ride; matching hears of it through ride.requested."""
    require(caller, "rider")
    now = datetime.now(UTC)
    draft = new_ride(rider=actor(caller), pickup=body.pickup, dropoff=body.dropoff, now=now)
    amount, currency = await fare_estimate(draft.straight_line_km)
    ride = new_ride(
        rider=actor(caller),
        pickup=body.pickup,
        dropoff=body.dropoff,
        now=now,
        ride_id=draft.id,
        fare_estimate=amount,
        currency=currency,
    )
    await store.add(session, ride)
    payload = ev.RideRequested(
        ride_id=ride.id,
        rider_id=ride.rider_id,
        pickup=ride.pickup,
        dropoff=ride.dropoff,
        requested_at=now,
    )
    await svc.events.publish("ride.requested", payload, key=ride.id, session=session)
    return view(ride)


@svc.get("/rides")
async def my_rides(
    caller: CallerDep,
    session: DbReadSession,
    status: str | None = None,
    limit: int = 50,
) -> list[RideView]:
    """The caller's rides, newest first (riders: requested; drivers: assigned; admins: all)."""
    limit = max(1, min(limit, 1000))
    query = select(store.rides).order_by(store.rides.c.requested_at.desc()).limit(limit)
    if caller.role == "rider":
        query = query.where(store.rides.c.rider_id == caller.id)
    elif caller.role == "driver":
        query = query.where(store.rides.c.driver_id == caller.id)
    if status is not None:
        query = query.where(or_(store.rides.c.status == status))
    rows = (await session.execute(query)).all()
    return [view(store.from_row(row), row) for row in rows]


@svc.get("/rides/{ride_id}")
async def get_ride(ride_id: str, caller: CallerDep, session: DbReadSession) -> RideView:
    """One ride, to its rider, its driver or an admin (404 for anyone else)."""
    found = await store.load(session, ride_id)
    try:
        ride = check_visible(found[0] if found else None, actor(caller), ride_id)
    except RideError as exc:
        raise problem(exc) from exc
    return view(ride, found[1] if found else None)


async def _act(
    session: AsyncSession,
    ride_id: str,
    action: Action,
    who: Actor,
    *,
    reason: str | None = None,
    **kwargs: Any,
) -> tuple[Ride, Ride]:
    """Apply ``action``; publish its event in the same transaction."""
    found = await store.load(session, ride_id)
    if found is None:
        raise RideNotFound(ride_id)
    before = found[0]
    transition = apply(before, action, actor=who, now=datetime.now(UTC), reason=reason, **kwargs)
    if not await store.save(session, before, transition.ride):
        raise IllegalTransition(ride_id, before.status, action)  # changed under us
    after = transition.ride
    if transition.topic is not None:
        payload = _payload(transition.topic, after, before, reason)
        await svc.events.publish(transition.topic, payload, key=ride_id, session=session)
    return before, after


def _payload(topic: str, ride: Ride, before: Ride, reason: str | None) -> Any:
    match topic:
        case "ride.match-expired":
            assert before.driver_id is not None
            waited = (ride.updated_at or ride.requested_at) - in_state_since(before)
            return ev.RideMatchExpired(
                ride_id=ride.id,
                driver_id=before.driver_id,
                waited_s=waited.total_seconds(),
                reason=reason or "the driver did not set off in time",
            )
        case "ride.driver-arriving" | "ride.started":
            assert ride.driver_id is not None
            return ev.RideProgressed(ride_id=ride.id, driver_id=ride.driver_id, status=ride.status)
        case "ride.completed":
            assert ride.driver_id
            assert ride.completed_at
            return ev.RideCompleted(
                ride_id=ride.id,
                rider_id=ride.rider_id,
                driver_id=ride.driver_id,
                dropoff=ride.dropoff,
                distance_km=ride.distance_km or 0.0,
                duration_s=ride.duration_s or 0.0,
                completed_at=ride.completed_at,
            )
        case "ride.cancelled":
            return ev.RideCancelled(
                ride_id=ride.id,
                rider_id=ride.rider_id,
                driver_id=ride.driver_id,
                reason=ride.ended_reason or "cancelled",
                driver_lost=before.status is RideStatus.IN_PROGRESS,
            )
    raise ValueError(f"rides does not publish {topic}")


Step = Literal["cancel", "arrive", "start", "complete"]


@svc.post("/rides/{ride_id}/{step}")
async def step(ride_id: str, step: Step, caller: CallerDep, session: DbSession) -> RideView:
    """cancel (the rider), arrive / start / complete (the assigned driver); 409 if illegal."""
    action, who = Action(step), actor(caller)
    extra: dict[str, Any] = {}
    try:
        if action is Action.COMPLETE:
            # Only the ride's driver gets as far as asking tracking. A read session of its
            # own: the request's would hold SQLite's write lock through the call.
            async with svc.db.read() as check:
                found = await store.load(check, ride_id)
            authorize(check_visible(found[0] if found else None, who, ride_id), who, action)
            extra["distance_km"] = await driven_km(ride_id, caller)
        result = await _act(session, ride_id, action, who, **extra)
    except RideError as exc:
        raise problem(exc) from exc
    assert result is not None
    return view(result[1])


# -- a driver who vanished ------------------------------------------------------------
async def sweep_overdue(now: datetime) -> list[tuple[str, Action]]:
    """Move every ride a vanished driver left too long in its state (domain.deadlines):
    released to another driver, or abandoned. Each move is its own transaction, a
    versioned update naming the cutoff: a driver acting at that moment, another
    replica's sweep, or a new match since the list was read wins, and this one skips."""
    s = svc.settings
    rules = deadlines(
        accept=timedelta(seconds=s.match_accept_timeout_s),
        pickup=timedelta(seconds=s.pickup_timeout_s),
        ride=timedelta(seconds=s.max_ride_s),
    )
    # One read session for the three lists (no write lock: it runs every second on
    # every replica, beside the writers).
    async with svc.db.read() as session:
        due = [
            (rule, now - rule.after, ride_id)
            for rule in rules
            for ride_id in await store.in_state_before(session, rule.status, now - rule.after)
        ]
    moved: list[tuple[str, Action]] = []
    for rule, cutoff, ride_id in due:
        try:
            async with svc.db.transaction() as session:
                await _act(
                    session, ride_id, rule.action, SYSTEM, stale_before=cutoff, reason=rule.reason
                )
        except RideError:  # moved on meanwhile
            continue
        moved.append((ride_id, rule.action))
    return moved


@svc.every(lambda: svc.settings.release_sweep_interval_s, name="overdue sweep")
async def _overdue_sweep() -> None:
    for ride_id, action in await sweep_overdue(datetime.now(UTC)):
        svc.log.info("a vanished driver's ride moved on", ride_id=ride_id, action=str(action))


@svc.events.subscribe("ride.driver-off-duty")
async def on_driver_off_duty(event: ev.DriverOffDuty, session: AsyncSession) -> None:
    """The driver went off duty: a ride they have not set off for goes to another driver
    now (declined); one they are driving, they finish (left as it is)."""
    try:
        await _act(
            session,
            event.ride_id,
            Action.DECLINE,
            SYSTEM,
            driver_id=event.driver_id,
            stale_before=event.at,
            reason="the driver went off duty",
        )
    except IllegalTransition as exc:
        svc.log.info("off duty after this ride", ride_id=event.ride_id, status=str(exc.status))


# -- events from matching and payments ------------------------------------------------
@svc.events.subscribe("ride.matched")
async def on_matched(event: ev.RideMatched, session: AsyncSession) -> None:
    try:
        await _act(session, event.ride_id, Action.MATCH, SYSTEM, driver_id=event.driver_id)
    except IllegalTransition as exc:
        # Cancelled meanwhile: matching frees the driver when it sees ride.cancelled.
        svc.log.info("late match ignored", ride_id=event.ride_id, status=str(exc.status))


@svc.events.subscribe("ride.unmatched")
async def on_unmatched(event: ev.RideUnmatched, session: AsyncSession) -> None:
    try:
        await _act(session, event.ride_id, Action.UNMATCH, SYSTEM, reason=event.reason)
    except IllegalTransition as exc:
        svc.log.info("late unmatch ignored", ride_id=event.ride_id, status=str(exc.status))


@svc.events.subscribe("payment.captured")
async def on_captured(event: ev.PaymentCaptured, session: AsyncSession) -> None:
    await session.execute(
        update(store.rides)
        .where(store.rides.c.id == event.ride_id)
        .values(fare=event.amount, currency=event.currency, payment_status="captured")
    )


@svc.events.subscribe("payment.failed")
async def on_payment_failed(event: ev.PaymentFailed, session: AsyncSession) -> None:
    await session.execute(
        update(store.rides)
        .where(store.rides.c.id == event.ride_id)
        .where(
            or_(store.rides.c.payment_status.is_(None), store.rides.c.payment_status != "captured")
        )
        .values(payment_status="failed")
    )
