"""Recent positions per driver and per ride, and fan-out to live followers.

- :class:`Tracks` keeps the last ``keep`` positions of each driver and of each ride
  (bounded deques: memory stays flat however long a driver drives), knows whose ride it
  is (``ride.requested``) and which driver is on it (from matching's ``ride.matched`` and
  the end-of-ride events): what :meth:`Tracks.may_see` decides ownership with.
- :class:`Hub` fans each update out to the ride's live followers. Every follower has a
  bounded queue; a follower that does not keep up loses its *oldest* updates (a live map
  wants the newest position, not a backlog), and the count of dropped updates is kept.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts.geo import Position, haversine_km


@dataclass(frozen=True, slots=True)
class Fix:
    """One position report."""

    driver_id: str
    position: Position
    at: datetime
    ride_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "type": "position",
            "driver_id": self.driver_id,
            "ride_id": self.ride_id,
            "position": self.position.model_dump(),
            "at": self.at.isoformat(),
        }


class Tracks:
    def __init__(self, *, keep: int = 100, keep_rides: int = 10_000) -> None:
        if keep < 1:
            raise ValueError("keep at least one position")
        self.keep = keep
        self.keep_rides = keep_rides
        self._drivers: dict[str, deque[Fix]] = {}
        self._rides: dict[str, deque[Fix]] = {}
        self._ride_of: dict[str, str] = {}
        self._driver_of: dict[str, str] = {}
        self._rider_of: dict[str, str] = {}
        self.ended: dict[str, str] = {}
        """ride id -> final status, for followers arriving after the end (bounded too)."""

    def requested(self, ride_id: str, rider_id: str) -> None:
        """The ride is this rider's (who alone may follow it)."""
        self._rider_of[ride_id] = rider_id

    def may_see(self, ride_id: str, *, caller_id: str, role: str) -> bool:
        """Admins see every ride; its rider sees it; its driver while driving it (rides
        asks the driven distance on the driver's behalf as they complete it)."""
        if role == "admin":
            return True
        if role == "rider":
            return self._rider_of.get(ride_id) == caller_id
        return role == "driver" and self._driver_of.get(ride_id) == caller_id

    def bind(self, ride_id: str, driver_id: str) -> None:
        """From now on this driver's positions are also this ride's (and no longer those
        of a driver the ride had before: a released match)."""
        self.release(ride_id)
        self._ride_of[driver_id] = ride_id
        self._driver_of[ride_id] = driver_id

    def release(self, ride_id: str) -> None:
        """The ride has no driver for now (the matched one never set off)."""
        driver_id = self._driver_of.pop(ride_id, None)
        if driver_id is not None and self._ride_of.get(driver_id) == ride_id:
            del self._ride_of[driver_id]

    def unbind(self, ride_id: str, status: str) -> None:
        self.release(ride_id)
        self.ended[ride_id] = status
        while len(self.ended) > self.keep_rides:
            oldest = next(iter(self.ended))
            del self.ended[oldest]
            self._rides.pop(oldest, None)
            self._rider_of.pop(oldest, None)

    def ride_of(self, driver_id: str) -> str | None:
        return self._ride_of.get(driver_id)

    def driver_of(self, ride_id: str) -> str | None:
        return self._driver_of.get(ride_id)

    def record(self, driver_id: str, position: Position, at: datetime) -> Fix:
        fix = Fix(driver_id, position, at, self._ride_of.get(driver_id))
        self._drivers.setdefault(driver_id, deque(maxlen=self.keep)).append(fix)
        if fix.ride_id is not None:
            self._rides.setdefault(fix.ride_id, deque(maxlen=self.keep)).append(fix)
        return fix

    def recent_for_driver(self, driver_id: str) -> list[Fix]:
        return list(self._drivers.get(driver_id, ()))

    def recent_for_ride(self, ride_id: str) -> list[Fix]:
        return list(self._rides.get(ride_id, ()))

    def distance_km(self, ride_id: str) -> float | None:
        """Distance driven along the ride's recorded track (None without two fixes)."""
        fixes = self._rides.get(ride_id)
        if not fixes or len(fixes) < 2:
            return None
        points = [f.position for f in fixes]
        return sum(haversine_km(a, b) for a, b in itertools.pairwise(points))


@dataclass(eq=False)
class Follower:
    """One live subscription: iterate it to receive updates until the ride ends."""

    ride_id: str
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=64)
    )
    dropped: int = 0

    def offer(self, update: dict[str, Any] | None) -> None:
        while True:
            try:
                self.queue.put_nowait(update)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()  # drop the oldest: the newest position matters
                self.dropped += 1

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            update = await self.queue.get()
            if update is None:
                return
            yield update


class Hub:
    """Live followers per ride, on this replica."""

    def __init__(self, *, queue_size: int = 64) -> None:
        self.queue_size = queue_size
        self._followers: dict[str, set[Follower]] = {}

    def follow(self, ride_id: str) -> Follower:
        follower = Follower(ride_id, asyncio.Queue(maxsize=self.queue_size))
        self._followers.setdefault(ride_id, set()).add(follower)
        return follower

    def leave(self, follower: Follower) -> None:
        followers = self._followers.get(follower.ride_id)
        if followers is not None:
            followers.discard(follower)
            if not followers:
                del self._followers[follower.ride_id]

    def followers(self, ride_id: str) -> int:
        return len(self._followers.get(ride_id, ()))

    def publish(self, ride_id: str, update: dict[str, Any]) -> int:
        """Send ``update`` to every follower of the ride; returns how many."""
        followers = self._followers.get(ride_id, set())
        for follower in followers:
            follower.offer(update)
        return len(followers)

    def close(self, ride_id: str, final: dict[str, Any]) -> None:
        """The ride ended: send ``final`` and end every follower's stream."""
        for follower in self._followers.pop(ride_id, set()):
            follower.offer(final)
            follower.offer(None)
