"""matching: driver availability; assigns the nearest free driver to each ride.

Every replica keeps its own R-tree of free drivers (index.py) and proposes candidates
from it; the database decides (store.py: conditional updates), so replicas never
disagree about who drives whom. A sweep on each replica resyncs the index, retries
waiting rides and expires the ones that waited too long.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import events as ev
from contracts.geo import Position
from contracts.identity import CallerDep, require
from contracts.started import Started
from corral.sdk import Problem, Service, ServiceSettings
from matching.domain import Match, Matcher, MatchingRules
from matching.store import SqlMatchStore, metadata


class Settings(ServiceSettings):
    max_pickup_km: float = Field(default=15.0, gt=0)
    wait_timeout_s: float = Field(default=120.0, gt=0)
    sweep_interval_s: float = Field(default=0.5, gt=0)
    driver_idle_timeout_s: float = Field(default=120.0, gt=0)


svc = Service("matching", settings=Settings, metadata=metadata, title="ridehail matching")
matcher = Started[Matcher]("the matcher")
MatcherDep = Annotated[Matcher, Depends(matcher.dependency)]


async def _publish_match(match: Match, session: AsyncSession) -> None:
    payload = ev.RideMatched(
        ride_id=match.ride_id, driver_id=match.driver_id, pickup_km=match.pickup_km
    )
    await svc.events.publish("ride.matched", payload, key=match.ride_id, session=session)


async def _publish_unmatched(ride_id: str, session: AsyncSession) -> None:
    seconds = svc.settings.wait_timeout_s
    payload = ev.RideUnmatched(ride_id=ride_id, reason=f"no driver within {seconds:g}s")
    await svc.events.publish("ride.unmatched", payload, key=ride_id, session=session)


async def _publish_off_duty(
    ride_id: str, driver_id: str, at: datetime, session: AsyncSession
) -> None:
    payload = ev.DriverOffDuty(ride_id=ride_id, driver_id=driver_id, at=at)
    await svc.events.publish("ride.driver-off-duty", payload, key=ride_id, session=session)


@svc.on_startup
async def _start() -> None:
    settings = svc.settings
    matcher.set(
        Matcher(
            SqlMatchStore(svc.db),
            rules=MatchingRules(
                max_pickup_km=settings.max_pickup_km,
                wait_timeout=timedelta(seconds=settings.wait_timeout_s),
                driver_idle_timeout=timedelta(seconds=settings.driver_idle_timeout_s),
            ),
            on_match=_publish_match,
            on_unmatched=_publish_unmatched,
            on_off_duty=_publish_off_duty,
        )
    )


@svc.every(lambda: svc.settings.sweep_interval_s, name="sweep")
async def _sweep() -> None:
    matches, unmatched = await matcher().sweep(datetime.now(UTC))
    for match in matches:
        svc.log.info("matched by sweep", ride_id=match.ride_id, driver_id=match.driver_id)
    for ride_id in unmatched:
        svc.log.info("ride unmatched", ride_id=ride_id)


class Availability(BaseModel):
    model_config = ConfigDict(extra="forbid")
    available: bool
    position: Position | None = None


class AvailabilityView(BaseModel):
    driver_id: str
    available: bool
    ride_id: str | None
    matched_ride_id: str | None = None


@svc.put("/drivers/me/availability")
async def set_availability(
    body: Availability, caller: CallerDep, m: MatcherDep
) -> AvailabilityView:
    """A driver goes on or off duty, with where they are; a free driver may be matched
    with a waiting ride at once (``matched_ride_id``)."""
    require(caller, "driver")
    if body.available and body.position is None:
        raise Problem(422, "Position needed", detail="say where you are when going available")
    duty = await m.driver_availability(
        caller.id, available=body.available, position=body.position, now=datetime.now(UTC)
    )
    return AvailabilityView(
        driver_id=caller.id,
        available=body.available,
        ride_id=duty.ride_id,
        matched_ride_id=duty.match.ride_id if duty.match else None,
    )


@svc.get("/assignments")
async def assignments(caller: CallerDep, m: MatcherDep) -> dict[str, str]:
    """ride id -> driver id of every ride a driver is on now (admins; invariant checks)."""
    require(caller, "admin")
    return await m.assignments()


@svc.get("/drivers")
async def drivers_on_duty(caller: CallerDep, m: MatcherDep) -> dict[str, Position]:
    """Free drivers on duty, by id, with where they are (admins: operations and tests)."""
    require(caller, "admin")
    return await m.store.available_drivers()


@svc.get("/waiting")
async def waiting(caller: CallerDep, m: MatcherDep) -> list[dict[str, object]]:
    """Rides waiting for a driver, oldest first (admins: operations and tests)."""
    require(caller, "admin")
    return [
        {"ride_id": w.id, "pickup": w.pickup.model_dump(), "requested_at": w.requested_at}
        for w in await m.store.waiting()
    ]


# -- events from rides ----------------------------------------------------------------
@svc.events.subscribe("ride.requested")
async def on_requested(event: ev.RideRequested) -> None:
    await matcher().ride_requested(event.ride_id, event.pickup, event.requested_at)


@svc.events.subscribe("ride.match-expired")
async def on_match_expired(event: ev.RideMatchExpired) -> None:
    match = await matcher().match_expired(event.ride_id, event.driver_id, datetime.now(UTC))
    svc.log.info(
        "driver replaced: taken off duty, ride matched again",
        ride_id=event.ride_id,
        driver_id=event.driver_id,
        reason=event.reason,
        waited_s=round(event.waited_s, 1),
        new_driver_id=match.driver_id if match else None,
    )


@svc.events.subscribe("ride.completed")
async def on_completed(event: ev.RideCompleted) -> None:
    await matcher().ride_closed(event.ride_id, datetime.now(UTC), driver_position=event.dropoff)


@svc.events.subscribe("ride.cancelled")
async def on_cancelled(event: ev.RideCancelled) -> None:
    await matcher().ride_closed(event.ride_id, datetime.now(UTC), driver_lost=event.driver_lost)
