"""Matching riders with drivers: nearest available driver, waiting rides, timeouts.

The invariant "a driver is never on two rides at once" is not kept by this module's
memory: several matching replicas each hold their own :class:`DriverIndex`, and any of
them may be stale. The index only *proposes* candidates; the :class:`MatchStore` decides,
atomically, in the service's database (see ``store.py``: one transaction that takes the
driver ``WHERE ride_id IS NULL AND online`` and the ride ``WHERE status = 'waiting'``, plus
unique indexes as a second line). A refused claim just means "someone else got there
first": the candidate is dropped from this replica's view and the next one is tried.

Waiting rides live in the store too, so a driver who comes online at replica B serves a
ride that was requested at replica A. Each replica also runs :meth:`Matcher.sweep`
periodically: it resyncs its index, retries waiting rides and expires the ones that
waited too long (``ride.unmatched``); the store makes the expiry happen exactly once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from contracts.geo import Position, haversine_km
from matching.index import DriverIndex


class Claim(StrEnum):
    """The store's verdict on "put this driver on this ride"."""

    OK = "ok"
    DRIVER_TAKEN = "driver_taken"  # offline, unknown, or already on a ride
    RIDE_GONE = "ride_gone"  # matched elsewhere, cancelled, expired, or unknown


@dataclass(frozen=True, slots=True)
class WaitingRide:
    id: str
    pickup: Position
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class Match:
    ride_id: str
    driver_id: str
    pickup_km: float


@dataclass(frozen=True, slots=True)
class Duty:
    """What a driver going on or off duty (or moving) is told."""

    ride_id: str | None
    """The ride they are on now: one matched by this call, or an earlier one."""
    match: Match | None = None
    """The waiting ride this call matched them with, if any."""


OnCommit = Callable[[Any], Awaitable[None]]
"""Called inside the store's transaction after a successful change, with the store's
session (``None`` for the memory store): where the service writes its outbox event, so
the event exists if and only if the change committed."""

OnLeave = Callable[[Any, str], Awaitable[None]]
"""The same, for a driver who went off duty while on a ride: with the session and the
ride's id."""


class MatchStore(Protocol):
    """The source of truth for drivers and rides; every method is one transaction."""

    async def add_ride(self, ride_id: str, pickup: Position, now: datetime) -> bool:
        """Record a new waiting ride; False when the ride was seen before (redelivery)."""
        ...

    async def set_driver(
        self,
        driver_id: str,
        *,
        online: bool,
        position: Position | None,
        now: datetime,
        on_leave: OnLeave | None = None,
    ) -> str | None:
        """Driver goes on/offline and/or moves; returns the ride they are on, if any.
        ``on_leave`` runs in the same transaction when they go offline while on one."""
        ...

    async def claim(
        self, driver_id: str, ride_id: str, now: datetime, *, on_commit: OnCommit | None = None
    ) -> Claim:
        """Atomically put an available driver on a waiting ride."""
        ...

    async def close_ride(
        self,
        ride_id: str,
        now: datetime,
        *,
        driver_position: Position | None = None,
        off_duty: bool = False,
    ) -> str | None:
        """The ride ended (completed/cancelled): never match it again; free its driver,
        moved to ``driver_position`` when given, and offline when ``off_duty`` (a driver
        who vanished mid-ride). Returns the freed driver's id."""
        ...

    async def expire(
        self, ride_id: str, now: datetime, *, on_commit: OnCommit | None = None
    ) -> bool:
        """A waiting ride becomes unmatched; True for exactly one caller."""
        ...

    async def release(self, ride_id: str, driver_id: str, now: datetime) -> WaitingRide | None:
        """The driver on this ride never set off: the ride waits again (its wait starts
        over at ``now``) and the driver goes off duty. None when the ride is not this
        driver's assigned ride any more (closed, or released by another replica)."""
        ...

    async def expire_idle_drivers(self, before: datetime) -> list[str]:
        """Free drivers not heard from since ``before`` go offline (a closed app, a lost
        phone, a killed simulator): they are never proposed again until they say they
        are available. Drivers on a ride are left alone. Returns who went offline."""
        ...

    async def waiting(self) -> list[WaitingRide]:
        """Rides waiting for a driver, oldest first."""
        ...

    async def available_drivers(self) -> dict[str, Position]:
        """Online drivers on no ride, with their positions."""
        ...

    async def free_driver(self, driver_id: str) -> Position | None:
        """Where this driver is if they are online and on no ride (else None): one
        driver's row, where :meth:`available_drivers` reads them all."""
        ...

    async def assignments(self) -> dict[str, str]:
        """ride id -> driver id of every ride a driver is on now."""
        ...


@dataclass(frozen=True, slots=True)
class MatchingRules:
    max_pickup_km: float = 15.0
    """A driver farther than this from the pickup is never proposed."""
    wait_timeout: timedelta = timedelta(minutes=2)
    """A ride waiting longer than this becomes ``unmatched``."""
    candidates: int = 5
    """How many nearest drivers to try before the ride waits."""
    driver_idle_timeout: timedelta = timedelta(minutes=2)
    """A free driver who has not confirmed availability for this long goes offline: a
    driver app that vanished without saying so must not be matched (its ride would wait
    forever in ``matched``). Driver apps re-send availability while they wait."""
    idle_checks_per_timeout: int = 10
    """Sweeps look for idle drivers every ``driver_idle_timeout / idle_checks_per_timeout``
    (a vanished driver goes offline at most that much late), not at every sweep: the
    check is a write transaction, and sweeps run twice a second on every replica."""


class Matcher:
    """One replica's matching logic over a shared :class:`MatchStore`.

    ``on_match(match, session)``, ``on_unmatched(ride_id, session)`` and
    ``on_off_duty(ride_id, driver_id, at, session)`` (a driver on a ride went off duty)
    run inside the store transaction that made the change (publish the event there, via
    the outbox).
    """

    def __init__(
        self,
        store: MatchStore,
        *,
        rules: MatchingRules | None = None,
        on_match: Callable[[Match, Any], Awaitable[None]] | None = None,
        on_unmatched: Callable[[str, Any], Awaitable[None]] | None = None,
        on_off_duty: Callable[[str, str, datetime, Any], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.rules = rules or MatchingRules()
        self.index = DriverIndex()
        self._on_match = on_match
        self._on_unmatched = on_unmatched
        self._on_off_duty = on_off_duty
        self._idle_checked: datetime | None = None

    # -- events and requests --------------------------------------------------------
    async def ride_requested(self, ride_id: str, pickup: Position, now: datetime) -> Match | None:
        """A new ride: match it now with the nearest free driver, or leave it waiting."""
        if not await self.store.add_ride(ride_id, pickup, now):
            return None  # a redelivery: the first delivery did (or will do) the work
        return await self._match_ride(WaitingRide(ride_id, pickup, now), now)

    async def driver_availability(
        self, driver_id: str, *, available: bool, position: Position | None, now: datetime
    ) -> Duty:
        """A driver goes on or off duty (and/or moves); a free driver serves a waiting ride.
        Off duty while on a ride: ``on_off_duty`` tells rides, which hands a ride the
        driver has not set off for to another one."""
        on_ride = await self.store.set_driver(
            driver_id,
            online=available,
            position=position,
            now=now,
            on_leave=None if available else self._off_duty_hook(driver_id, now),
        )
        if not available or on_ride is not None:
            self.index.remove(driver_id)
            return Duty(on_ride)
        where = position or self.index.position(driver_id)
        if where is None:
            where = await self.store.free_driver(driver_id)
            if where is None:
                return Duty(None)
        self.index.upsert(driver_id, where)
        match = await self._serve_waiting(driver_id, where, now)
        return Duty(match.ride_id if match else None, match)

    async def assignments(self) -> dict[str, str]:
        """ride id -> driver id of every ride a driver is on now (admins, checks)."""
        return await self.store.assignments()

    async def ride_closed(
        self,
        ride_id: str,
        now: datetime,
        *,
        driver_position: Position | None = None,
        driver_lost: bool = False,
    ) -> Match | None:
        """The ride completed or was cancelled: its driver is free again (at the dropoff),
        or off duty when they vanished mid-ride (``driver_lost``)."""
        driver_id = await self.store.close_ride(
            ride_id, now, driver_position=driver_position, off_duty=driver_lost
        )
        if driver_id is None:
            return None
        where = await self.store.free_driver(driver_id)
        if where is None:  # went offline during the ride
            return None
        self.index.upsert(driver_id, where)
        return await self._serve_waiting(driver_id, where, now)

    async def match_expired(self, ride_id: str, driver_id: str, now: datetime) -> Match | None:
        """rides released the ride (its driver never set off): take the driver off duty and
        match the ride again at once, or leave it waiting for the sweep."""
        ride = await self.store.release(ride_id, driver_id, now)
        self.index.remove(driver_id)
        if ride is None:
            return None
        return await self._match_ride(ride, now)

    async def sweep(self, now: datetime) -> tuple[list[Match], list[str]]:
        """Take idle drivers offline; resync the index; expire rides that waited too long;
        retry the others."""
        timeout = self.rules.driver_idle_timeout
        every = timeout / max(1, self.rules.idle_checks_per_timeout)
        if self._idle_checked is None or now - self._idle_checked >= every:
            self._idle_checked = now
            await self.store.expire_idle_drivers(now - timeout)
        self.index.replace_all(await self.store.available_drivers())
        matches: list[Match] = []
        unmatched: list[str] = []
        for ride in await self.store.waiting():
            if now - ride.requested_at >= self.rules.wait_timeout:
                if await self.store.expire(ride.id, now, on_commit=self._unmatched_hook(ride.id)):
                    unmatched.append(ride.id)
                continue
            if not len(self.index):
                continue
            match = await self._match_ride(ride, now)
            if match is not None:
                matches.append(match)
        return matches, unmatched

    # -- internals ------------------------------------------------------------------
    async def _match_ride(self, ride: WaitingRide, now: datetime) -> Match | None:
        candidates = self.index.nearest(
            ride.pickup, max_km=self.rules.max_pickup_km, limit=self.rules.candidates
        )
        for driver_id, km in candidates:
            match = Match(ride.id, driver_id, round(km, 3))
            verdict = await self.store.claim(
                driver_id, ride.id, now, on_commit=self._match_hook(match)
            )
            self.index.remove(driver_id)  # assigned now, or stale in this replica
            if verdict is Claim.OK:
                return match
            if verdict is Claim.RIDE_GONE:
                return None
        return None

    async def _serve_waiting(self, driver_id: str, where: Position, now: datetime) -> Match | None:
        for ride in await self.store.waiting():  # oldest first: fair to whoever waited longest
            km = haversine_km(where, ride.pickup)
            if km > self.rules.max_pickup_km:
                continue
            if now - ride.requested_at >= self.rules.wait_timeout:
                continue  # the sweep expires it
            match = Match(ride.id, driver_id, round(km, 3))
            verdict = await self.store.claim(
                driver_id, ride.id, now, on_commit=self._match_hook(match)
            )
            if verdict is Claim.OK:
                self.index.remove(driver_id)
                return match
            if verdict is Claim.DRIVER_TAKEN:
                self.index.remove(driver_id)
                return None
        return None

    def _match_hook(self, match: Match) -> OnCommit | None:
        hook = self._on_match
        if hook is None:
            return None

        async def run(session: Any) -> None:
            await hook(match, session)

        return run

    def _off_duty_hook(self, driver_id: str, now: datetime) -> OnLeave | None:
        hook = self._on_off_duty
        if hook is None:
            return None

        async def run(session: Any, ride_id: str) -> None:
            await hook(ride_id, driver_id, now, session)

        return run

    def _unmatched_hook(self, ride_id: str) -> OnCommit | None:
        hook = self._on_unmatched
        if hook is None:
            return None

        async def run(session: Any) -> None:
            await hook(ride_id, session)

        return run
