"""tracking: drivers post positions; riders follow their ride live (server-sent events).

Run one replica: live followers are held in this process's memory (domain.Hub). With
several replicas, positions would have to be fanned out between them over the bus.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from sse_starlette.sse import EventSourceResponse

from contracts import events as ev
from contracts.geo import Position
from contracts.identity import Caller, CallerDep, require
from corral.sdk import Problem, Service
from tracking.domain import Hub, Tracks

svc = Service("tracking", title="ridehail tracking")
tracks = Tracks(keep=200)
hub = Hub()


class PositionReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    position: Position


@svc.post("/positions", status_code=202)
async def post_position(body: PositionReport, caller: CallerDep) -> dict[str, object]:
    """A driver reports where they are."""
    require(caller, "driver")
    fix = tracks.record(caller.id, body.position, datetime.now(UTC))
    delivered = hub.publish(fix.ride_id, fix.as_json()) if fix.ride_id else 0
    return {"accepted": True, "ride_id": fix.ride_id, "followers": delivered}


def _check_owner(ride_id: str, caller: Caller) -> None:
    """404 (not 403: no hint that the ride exists) unless the caller may see the ride."""
    if not tracks.may_see(ride_id, caller_id=caller.id, role=caller.role):
        raise Problem(404, "No such ride", detail=f"no ride {ride_id} of yours is tracked")


@svc.get("/rides/{ride_id}/positions")
async def recent(ride_id: str, caller: CallerDep) -> dict[str, object]:
    """The ride's recent positions (its rider)."""
    _check_owner(ride_id, caller)
    return {"ride_id": ride_id, "positions": [f.as_json() for f in tracks.recent_for_ride(ride_id)]}


@svc.get("/rides/{ride_id}/live")
async def live(ride_id: str, caller: CallerDep) -> EventSourceResponse:
    """Server-sent events: the recent track, then each new position, then the ride's end."""
    _check_owner(ride_id, caller)
    follower = hub.follow(ride_id)

    async def stream() -> AsyncIterator[dict[str, str]]:
        try:
            for fix in tracks.recent_for_ride(ride_id):
                yield {"event": "position", "data": json.dumps(fix.as_json())}
            if ride_id in tracks.ended:
                yield {"event": "status", "data": json.dumps({"status": tracks.ended[ride_id]})}
                return
            async for update in follower:
                yield {"event": str(update.get("type", "position")), "data": json.dumps(update)}
        finally:
            hub.leave(follower)

    return EventSourceResponse(stream(), ping=15)


@svc.get("/rides/{ride_id}/distance")
async def distance(ride_id: str, caller: CallerDep) -> dict[str, object]:
    """Distance along the recorded track: its rider, an admin, or its driver (rides asks
    on the driver's behalf as they complete the ride)."""
    _check_owner(ride_id, caller)
    return {"ride_id": ride_id, "distance_km": tracks.distance_km(ride_id)}


@svc.events.subscribe("ride.requested")
async def on_requested(event: ev.RideRequested) -> None:
    tracks.requested(event.ride_id, event.rider_id)


@svc.events.subscribe("ride.matched")
async def on_matched(event: ev.RideMatched) -> None:
    tracks.bind(event.ride_id, event.driver_id)
    hub.publish(
        event.ride_id, {"type": "status", "status": "matched", "driver_id": event.driver_id}
    )


@svc.events.subscribe("ride.match-expired")
async def on_match_expired(event: ev.RideMatchExpired) -> None:
    tracks.release(event.ride_id)
    hub.publish(event.ride_id, {"type": "status", "status": "requested", "driver_id": None})


@svc.events.subscribe("ride.driver-arriving")
async def on_arriving(event: ev.RideProgressed) -> None:
    hub.publish(event.ride_id, {"type": "status", "status": event.status})


@svc.events.subscribe("ride.started")
async def on_started(event: ev.RideProgressed) -> None:
    hub.publish(event.ride_id, {"type": "status", "status": event.status})


async def _end(ride_id: str, status: str) -> None:
    tracks.unbind(ride_id, status)
    hub.close(ride_id, {"type": "status", "status": status})


@svc.events.subscribe("ride.completed")
async def on_completed(event: ev.RideCompleted) -> None:
    await _end(event.ride_id, "completed")


@svc.events.subscribe("ride.cancelled")
async def on_cancelled(event: ev.RideCancelled) -> None:
    await _end(event.ride_id, "cancelled")


@svc.events.subscribe("ride.unmatched")
async def on_unmatched(event: ev.RideUnmatched) -> None:
    await _end(event.ride_id, "unmatched")
