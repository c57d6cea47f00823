"""The events between ridehail services: one pydantic model per topic.

| topic | producer | consumers |
|---|---|---|
| ride.requested | rides | matching, tracking |
| ride.matched | matching | rides, tracking |
| ride.unmatched | matching | rides, tracking |
| ride.match-expired | rides | matching, tracking |
| ride.driver-arriving | rides | tracking |
| ride.started | rides | tracking |
| ride.completed | rides | payments, matching, tracking |
| ride.cancelled | rides | matching, tracking |
| ride.driver-off-duty | matching | rides |
| payment.captured | payments | rides |
| payment.failed | payments | rides |

Every payload carries ``ride_id``, the ordering key of its topic.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from contracts.geo import Position


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore")  # newer producers may add fields
    ride_id: str


class RideRequested(_Event):
    rider_id: str
    pickup: Position
    dropoff: Position
    requested_at: datetime


class RideMatched(_Event):
    driver_id: str
    pickup_km: float


class RideUnmatched(_Event):
    reason: str


class RideMatchExpired(_Event):
    """The ride's driver did not set off or pick the rider up in time, or went off duty
    before setting off: the ride is waiting for a driver again, and ``driver_id`` is
    taken off duty."""

    driver_id: str
    waited_s: float
    reason: str = "the driver did not set off in time"


class DriverOffDuty(_Event):
    """The driver on this ride went off duty (at ``at``): rides hands a ride they have not
    set off for to another driver; one they are driving, they finish."""

    driver_id: str
    at: datetime


class RideProgressed(_Event):
    """ride.driver-arriving and ride.started."""

    driver_id: str
    status: str


class RideCompleted(_Event):
    rider_id: str
    driver_id: str
    dropoff: Position
    distance_km: float
    duration_s: float
    completed_at: datetime


class RideCancelled(_Event):
    rider_id: str
    driver_id: str | None
    reason: str
    driver_lost: bool = False
    """The driver vanished mid-ride: matching takes them off duty."""


class PaymentCaptured(_Event):
    amount: str
    currency: str
    charge_id: str


class PaymentFailed(_Event):
    reason: str
    attempts: int
