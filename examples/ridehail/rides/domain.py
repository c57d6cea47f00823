"""The ride lifecycle as an explicit state machine, and who may move a ride along it.

::

    requested -match-> matched -arrive-> driver_arriving -start-> in_progress -complete-> completed

    requested -unmatch-> unmatched         matched -release, decline-> requested
    requested, matched,                    driver_arriving -release-> requested
      driver_arriving -cancel-> cancelled  in_progress -abandon-> cancelled

``match`` and ``unmatch`` are the matching service's verdicts (events); ``arrive``,
``start`` and ``complete`` are the assigned driver's; ``cancel`` is the rider's (or an
admin's). The rest is what happens when a driver vanishes (rides' sweep and matching's
word, never a token):

- ``release``: the driver did not set off within the accept timeout (matched) or did not
  pick the rider up within the pickup timeout (driver_arriving). The rider is still
  waiting at the pickup and wants a car: the ride is requested again, another driver is
  matched (ride.match-expired; matching takes the vanished one off duty).
- ``decline``: the matched driver went off duty before setting off: the same, at once.
- ``abandon``: an in-progress ride not completed within the longest ride there can be
  (the driver's app died mid-ride). The rider is in the car, so nobody can take over:
  it ends ``cancelled`` with the reason, never charged (payments charges only
  ``ride.completed``); matching takes the driver off duty; support settles it by hand.

Each of them names a cutoff: only a ride in its state since before it moves (a driver
acting at that moment, or a newer match, wins). Everything here is pure: :func:`apply`
takes a ride and returns the next ride and the fact to publish, or raises one of the
errors below.

Errors (the API maps each to a status)::

    RideError
     +-- RideNotFound      404  the ride does not exist, or the actor may not see it
     +-- NotAllowed        403  the actor sees the ride but may not do this to it
     +-- IllegalTransition 409  the ride's state does not allow the action
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from contracts.geo import Position, haversine_km


class RideStatus(StrEnum):
    REQUESTED = "requested"
    MATCHED = "matched"
    DRIVER_ARRIVING = "driver_arriving"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    UNMATCHED = "unmatched"

    @property
    def is_final(self) -> bool:
        return self in FINAL


FINAL = frozenset({RideStatus.COMPLETED, RideStatus.CANCELLED, RideStatus.UNMATCHED})
"""States no action leaves."""


class Action(StrEnum):
    MATCH = "match"
    ARRIVE = "arrive"
    START = "start"
    COMPLETE = "complete"
    CANCEL = "cancel"
    UNMATCH = "unmatch"
    RELEASE = "release"
    DECLINE = "decline"
    ABANDON = "abandon"


class Role(StrEnum):
    RIDER = "rider"
    DRIVER = "driver"
    ADMIN = "admin"
    SYSTEM = "system"
    """A service acting (matching's verdicts, rides' own sweep), never a token."""


S, A = RideStatus, Action
TRANSITIONS: dict[tuple[RideStatus, Action], RideStatus] = {
    (S.REQUESTED, A.MATCH): S.MATCHED,
    (S.REQUESTED, A.UNMATCH): S.UNMATCHED,
    (S.MATCHED, A.ARRIVE): S.DRIVER_ARRIVING,
    (S.MATCHED, A.RELEASE): S.REQUESTED,
    (S.MATCHED, A.DECLINE): S.REQUESTED,
    (S.DRIVER_ARRIVING, A.START): S.IN_PROGRESS,
    (S.DRIVER_ARRIVING, A.RELEASE): S.REQUESTED,
    (S.IN_PROGRESS, A.COMPLETE): S.COMPLETED,
    (S.IN_PROGRESS, A.ABANDON): S.CANCELLED,
    (S.REQUESTED, A.CANCEL): S.CANCELLED,
    (S.MATCHED, A.CANCEL): S.CANCELLED,
    (S.DRIVER_ARRIVING, A.CANCEL): S.CANCELLED,
}
"""The whole state machine: (state, action) -> next state. Anything else is illegal."""

EVENT_OF: dict[Action, str | None] = {
    Action.MATCH: None,  # matching published ride.matched; rides only records it
    Action.UNMATCH: None,  # likewise ride.unmatched
    Action.ARRIVE: "ride.driver-arriving",
    Action.START: "ride.started",
    Action.COMPLETE: "ride.completed",
    Action.CANCEL: "ride.cancelled",
    Action.RELEASE: "ride.match-expired",
    Action.DECLINE: "ride.match-expired",
    Action.ABANDON: "ride.cancelled",
}
"""The topic rides publishes after each action (``ride.requested`` on creation)."""

REQUESTED_TOPIC = "ride.requested"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking: the verified token's subject and role, or a service."""

    id: str
    role: Role


SYSTEM = Actor("system", Role.SYSTEM)


class RideError(Exception):
    """Base of the rides domain errors."""


class RideNotFound(RideError):
    def __init__(self, ride_id: str) -> None:
        super().__init__(f"no ride {ride_id}")
        self.ride_id = ride_id


class NotAllowed(RideError):
    def __init__(self, actor: Actor, action: Action, reason: str) -> None:
        super().__init__(f"a {actor.role} may not {action} this ride: {reason}")
        self.actor, self.action, self.reason = actor, action, reason


class IllegalTransition(RideError):
    def __init__(self, ride_id: str, status: RideStatus, action: Action) -> None:
        allowed = sorted(a for (s, a) in TRANSITIONS if s == status)
        hint = f"allowed now: {', '.join(allowed)}" if allowed else "the ride is over"
        super().__init__(f"cannot {action} a ride that is {status} ({hint})")
        self.ride_id, self.status, self.action = ride_id, status, action


@dataclass(frozen=True, slots=True)
class Ride:
    id: str
    rider_id: str
    pickup: Position
    dropoff: Position
    requested_at: datetime
    status: RideStatus = RideStatus.REQUESTED
    driver_id: str | None = None
    updated_at: datetime | None = None
    matched_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    ended_reason: str | None = None
    """Why a ride ended without completing (cancelled by whom, unmatched after how long)."""
    fare_estimate: str | None = None
    """A decimal amount as text, from payments' estimate; None when it was unavailable."""
    currency: str | None = None
    distance_km: float | None = None
    duration_s: float | None = None
    version: int = 0
    """Bumped by every transition; the store updates ``WHERE version = old`` (optimistic)."""

    @property
    def straight_line_km(self) -> float:
        return haversine_km(self.pickup, self.dropoff)


def new_ride(
    *,
    rider: Actor,
    pickup: Position,
    dropoff: Position,
    now: datetime,
    ride_id: str | None = None,
    fare_estimate: str | None = None,
    currency: str | None = None,
) -> Ride:
    """A rider's new ride request (only riders request rides)."""
    if rider.role is not Role.RIDER:
        raise NotAllowed(rider, Action.MATCH, "only riders request rides")
    return Ride(
        id=ride_id or str(uuid.uuid4()),
        rider_id=rider.id,
        pickup=pickup,
        dropoff=dropoff,
        requested_at=now,
        updated_at=now,
        fare_estimate=fare_estimate,
        currency=currency,
    )


def can_see(ride: Ride, actor: Actor) -> bool:
    """Riders see their own rides, drivers the rides assigned to them, admins all."""
    if actor.role in (Role.ADMIN, Role.SYSTEM):
        return True
    if actor.role is Role.RIDER:
        return ride.rider_id == actor.id
    return actor.role is Role.DRIVER and ride.driver_id is not None and ride.driver_id == actor.id


def check_visible(ride: Ride | None, actor: Actor, ride_id: str) -> Ride:
    """The ride when the actor may see it; :class:`RideNotFound` otherwise (no leak)."""
    if ride is None or not can_see(ride, actor):
        raise RideNotFound(ride_id)
    return ride


def authorize(ride: Ride, actor: Actor, action: Action) -> None:
    """Raise unless ``actor`` may attempt ``action`` on ``ride`` (whatever its state)."""
    check_visible(ride, actor, ride.id)
    match action:
        case Action.MATCH | Action.UNMATCH:
            if actor.role is not Role.SYSTEM:
                raise NotAllowed(actor, action, "matching decides this")
        case Action.RELEASE | Action.DECLINE | Action.ABANDON:
            if actor.role is not Role.SYSTEM:
                raise NotAllowed(actor, action, "the timeouts and matching decide this")
        case Action.ARRIVE | Action.START | Action.COMPLETE:
            if actor.role is not Role.DRIVER or ride.driver_id != actor.id:
                raise NotAllowed(actor, action, "only the assigned driver does this")
        case Action.CANCEL:
            if actor.role not in (Role.RIDER, Role.ADMIN):
                raise NotAllowed(actor, action, "only the rider (or an admin) cancels")


@dataclass(frozen=True, slots=True)
class Transition:
    """The result of an action: the ride after it and the topic to publish, if any."""

    ride: Ride
    topic: str | None


def apply(
    ride: Ride,
    action: Action,
    *,
    actor: Actor,
    now: datetime,
    driver_id: str | None = None,
    reason: str | None = None,
    distance_km: float | None = None,
    stale_before: datetime | None = None,
) -> Transition:
    """Move ``ride`` by ``action``: authorization first (404/403), then the state (409).

    ``driver_id`` is required for MATCH (the driver matched) and DECLINE (the driver who
    went off duty: only their match is declined); ``reason`` is kept for CANCEL, UNMATCH
    and ABANDON; ``distance_km`` on COMPLETE is the driven distance (straight line when
    None); ``stale_before`` is required for RELEASE, DECLINE and ABANDON: only a ride in
    its state since before it moves (one matched again, or moved on by its driver, since
    the sweep listed it or the driver went off duty, stays as it is).
    """
    authorize(ride, actor, action)
    target = TRANSITIONS.get((ride.status, action))
    if target is None:
        raise IllegalTransition(ride.id, ride.status, action)
    if action in (Action.RELEASE, Action.DECLINE, Action.ABANDON):
        if stale_before is None:
            raise ValueError(f"{action.upper()} needs the cutoff")
        if in_state_since(ride) >= stale_before:
            raise IllegalTransition(ride.id, ride.status, action)
    after = replace(ride, status=target, updated_at=now, version=ride.version + 1)
    match action:
        case Action.MATCH:
            if not driver_id:
                raise ValueError("MATCH needs the driver's id")
            after = replace(after, driver_id=driver_id, matched_at=now)
        case Action.START:
            after = replace(after, started_at=now)
        case Action.COMPLETE:
            started = ride.started_at or now
            km = distance_km if distance_km is not None else ride.straight_line_km
            after = replace(
                after,
                completed_at=now,
                duration_s=max(0.0, (now - started).total_seconds()),
                distance_km=round(km, 3),
            )
        case Action.CANCEL:
            after = replace(after, ended_reason=reason or f"cancelled by {actor.role}")
        case Action.UNMATCH:
            after = replace(after, ended_reason=reason or "no driver available")
        case Action.DECLINE if driver_id is None:
            raise ValueError("DECLINE needs the driver's id")
        case Action.DECLINE if driver_id != ride.driver_id:
            raise IllegalTransition(ride.id, ride.status, action)  # matched to another now
        case Action.RELEASE | Action.DECLINE:
            after = replace(after, driver_id=None, matched_at=None)
        case Action.ABANDON:
            after = replace(after, ended_reason=reason or "the driver lost contact")
        case Action.ARRIVE:
            pass
    return Transition(after, EVENT_OF[action])


def in_state_since(ride: Ride) -> datetime:
    """When the ride entered its current state (every transition stamps ``updated_at``)."""
    return ride.updated_at or ride.requested_at


@dataclass(frozen=True, slots=True)
class Deadline:
    """What happens to a ride left too long in one state by a vanished driver."""

    status: RideStatus
    after: timedelta
    action: Action
    reason: str


def deadlines(*, accept: timedelta, pickup: timedelta, ride: timedelta) -> list[Deadline]:
    """The product's rule for a driver who vanished, by the ride's state (module doc)."""
    return [
        Deadline(
            RideStatus.MATCHED,
            accept,
            Action.RELEASE,
            f"the driver did not set off within {accept.total_seconds():g}s",
        ),
        Deadline(
            RideStatus.DRIVER_ARRIVING,
            pickup,
            Action.RELEASE,
            f"the driver did not pick the rider up within {pickup.total_seconds():g}s",
        ),
        Deadline(
            RideStatus.IN_PROGRESS,
            ride,
            Action.ABANDON,
            f"the driver lost contact: not completed within {ride.total_seconds():g}s",
        ),
    ]
