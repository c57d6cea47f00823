"""Where matching's truth lives: an in-memory store for unit tests, SQL for the service.

Both implement :class:`matching.domain.MatchStore` and pass the same test suite. The SQL
store is what keeps "a driver is never on two rides" across concurrent requests and
several replicas: :meth:`SqlMatchStore.claim` is one transaction of two conditional
updates, ride first, then driver (always in that order, so two claims never deadlock)::

    UPDATE match_rides SET status='assigned', driver_id=:d WHERE id=:r AND status='waiting'
    UPDATE drivers SET ride_id=:r WHERE id=:d AND online AND ride_id IS NULL

and commits only when both touched exactly one row. On PostgreSQL (READ COMMITTED) a
second claim on the same row waits for the first and then re-checks its WHERE, so it sees
the driver taken; on SQLite every write transaction starts with BEGIN IMMEDIATE (the SDK
does this), which serializes them. Unique indexes are the second line: ``drivers.ride_id``
(one driver per ride) and ``match_rides.driver_id`` among assigned rides (one assigned
ride per driver).

The other writers are single conditional statements too, never "read, then write" (on
PostgreSQL another replica commits between the two): ``expire`` and ``close_ride`` change
a ride only ``WHERE status`` still allows it, and ``close_ride``'s tombstone for a ride
matching never heard of is ``INSERT ... ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    MetaData,
    String,
    Table,
    and_,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from contracts.geo import Position
from contracts.sql import insert_new
from corral.sdk import Database
from matching.domain import Claim, OnCommit, OnLeave, WaitingRide

metadata = MetaData()

drivers = Table(
    "drivers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("online", Boolean, nullable=False, default=False),
    Column("ride_id", String(64), nullable=True, unique=True),
    Column("lat", Float, nullable=True),
    Column("lng", Float, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

match_rides = Table(
    "match_rides",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),  # waiting | assigned | closed | unmatched
    Column("driver_id", String(64), nullable=True),
    Column("pickup_lat", Float, nullable=True),
    Column("pickup_lng", Float, nullable=True),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_match_rides_waiting", "status", "requested_at"),
    Index(
        "uq_match_rides_assigned_driver",
        "driver_id",
        unique=True,
        sqlite_where=text("status = 'assigned'"),
        postgresql_where=text("status = 'assigned'"),
    ),
)


_FREE_WITH_POSITION = and_(
    drivers.c.online.is_(True), drivers.c.ride_id.is_(None), drivers.c.lat.is_not(None)
)
"""A driver who can be proposed: online, on no ride, somewhere known."""


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class _Abort(Exception):
    """Roll the transaction back and return ``verdict``."""

    def __init__(self, verdict: Claim) -> None:
        self.verdict = verdict


class SqlMatchStore:
    """:class:`~matching.domain.MatchStore` on the service's own database (svc.db)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_ride(self, ride_id: str, pickup: Position, now: datetime) -> bool:
        try:
            async with self._db.transaction() as session:
                known = await session.scalar(
                    select(match_rides.c.id).where(match_rides.c.id == ride_id)
                )
                if known is not None:
                    return False
                await session.execute(
                    insert(match_rides).values(
                        id=ride_id,
                        status="waiting",
                        pickup_lat=pickup.lat,
                        pickup_lng=pickup.lng,
                        requested_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            return False  # a concurrent redelivery inserted it first
        return True

    async def set_driver(
        self,
        driver_id: str,
        *,
        online: bool,
        position: Position | None,
        now: datetime,
        on_leave: OnLeave | None = None,
    ) -> str | None:
        values: dict[str, object] = {"online": online, "updated_at": now}
        if position is not None:
            values |= {"lat": position.lat, "lng": position.lng}
        for _ in range(2):  # a concurrent first insert of the same driver: retry as update
            try:
                async with self._db.transaction() as session:
                    known = (
                        await session.execute(
                            update(drivers)
                            .where(drivers.c.id == driver_id)
                            .values(**values)
                            .returning(drivers.c.ride_id)
                        )
                    ).first()
                    if known is None:
                        await session.execute(insert(drivers).values(id=driver_id, **values))
                        return None
                    ride: str | None = known.ride_id
                    if ride is not None and not online and on_leave is not None:
                        await on_leave(session, ride)
                    return ride
            except IntegrityError:
                continue
        raise RuntimeError(f"could not record driver {driver_id}")

    async def claim(
        self, driver_id: str, ride_id: str, now: datetime, *, on_commit: OnCommit | None = None
    ) -> Claim:
        try:
            async with self._db.transaction() as session:
                ride = await session.scalar(
                    update(match_rides)
                    .where(and_(match_rides.c.id == ride_id, match_rides.c.status == "waiting"))
                    .values(status="assigned", driver_id=driver_id, updated_at=now)
                    .returning(match_rides.c.id)
                )
                if ride is None:
                    raise _Abort(Claim.RIDE_GONE)
                driver = await session.scalar(
                    update(drivers)
                    .where(
                        and_(
                            drivers.c.id == driver_id,
                            drivers.c.online.is_(True),
                            drivers.c.ride_id.is_(None),
                        )
                    )
                    .values(ride_id=ride_id, updated_at=now)
                    .returning(drivers.c.id)
                )
                if driver is None:
                    raise _Abort(Claim.DRIVER_TAKEN)
                if on_commit is not None:
                    await on_commit(session)
        except _Abort as abort:
            return abort.verdict
        except IntegrityError:
            return Claim.DRIVER_TAKEN  # the unique indexes caught what the WHERE did not
        return Claim.OK

    async def close_ride(
        self,
        ride_id: str,
        now: datetime,
        *,
        driver_position: Position | None = None,
        off_duty: bool = False,
    ) -> str | None:
        async with self._db.transaction() as session:
            # A tombstone if matching never heard of the ride (cancelled before
            # ride.requested arrived). ON CONFLICT, not "select, then insert": on PostgreSQL
            # a concurrent add_ride inserts between the two (it waits for ours or we for it).
            await session.execute(
                insert_new(session, match_rides).values(
                    id=ride_id, status="closed", requested_at=now, updated_at=now
                )
            )
            # Conditional: a ride that another replica expired meanwhile stays unmatched
            # (its ride.unmatched went out); a read status would be stale on PostgreSQL.
            await session.execute(
                update(match_rides)
                .where(
                    and_(
                        match_rides.c.id == ride_id,
                        match_rides.c.status.in_(("waiting", "assigned")),
                    )
                )
                .values(status="closed", updated_at=now)
            )
            driver_id: str | None = await session.scalar(
                select(drivers.c.id).where(drivers.c.ride_id == ride_id)
            )
            if driver_id is None:
                return None
            values: dict[str, object] = {"ride_id": None, "updated_at": now}
            if driver_position is not None:
                values |= {"lat": driver_position.lat, "lng": driver_position.lng}
            if off_duty:
                values["online"] = False
            await session.execute(update(drivers).where(drivers.c.id == driver_id).values(**values))
            return driver_id

    async def expire(
        self, ride_id: str, now: datetime, *, on_commit: OnCommit | None = None
    ) -> bool:
        async with self._db.transaction() as session:
            expired = await session.scalar(
                update(match_rides)
                .where(and_(match_rides.c.id == ride_id, match_rides.c.status == "waiting"))
                .values(status="unmatched", updated_at=now)
                .returning(match_rides.c.id)
            )
            if expired is None:
                return False
            if on_commit is not None:
                await on_commit(session)
        return True

    async def release(self, ride_id: str, driver_id: str, now: datetime) -> WaitingRide | None:
        async with self._db.transaction() as session:
            # Conditional, one statement each: a cancel or another replica's release
            # that committed first leaves nothing to do here.
            ride = (
                await session.execute(
                    update(match_rides)
                    .where(
                        and_(
                            match_rides.c.id == ride_id,
                            match_rides.c.status == "assigned",
                            match_rides.c.driver_id == driver_id,
                        )
                    )
                    .values(status="waiting", driver_id=None, requested_at=now, updated_at=now)
                    .returning(match_rides.c.pickup_lat, match_rides.c.pickup_lng)
                )
            ).first()
            if ride is None:
                return None
            await session.execute(
                update(drivers)
                .where(and_(drivers.c.id == driver_id, drivers.c.ride_id == ride_id))
                .values(ride_id=None, online=False, updated_at=now)
            )
            return WaitingRide(ride_id, Position(lat=ride.pickup_lat, lng=ride.pickup_lng), now)

    async def expire_idle_drivers(self, before: datetime) -> list[str]:
        async with self._db.transaction() as session:
            idle = and_(
                drivers.c.online.is_(True),
                drivers.c.ride_id.is_(None),
                drivers.c.updated_at < before,
            )
            # One statement: "select, then update" could report a driver as gone who
            # confirmed availability in between (on PostgreSQL, which does not serialize).
            result = await session.execute(
                update(drivers).where(idle).values(online=False).returning(drivers.c.id)
            )
            return sorted(result.scalars().all())

    # The reads below take read sessions: on SQLite a plain session's BEGIN IMMEDIATE
    # would take the write lock to read (every sweep, driver heartbeat and closed ride).
    async def waiting(self) -> list[WaitingRide]:
        async with self._db.read() as session:
            rows = await session.execute(
                select(
                    match_rides.c.id,
                    match_rides.c.pickup_lat,
                    match_rides.c.pickup_lng,
                    match_rides.c.requested_at,
                )
                .where(match_rides.c.status == "waiting")
                .order_by(match_rides.c.requested_at, match_rides.c.id)
            )
            return [
                WaitingRide(
                    r.id, Position(lat=r.pickup_lat, lng=r.pickup_lng), _utc(r.requested_at)
                )
                for r in rows
            ]

    async def available_drivers(self) -> dict[str, Position]:
        async with self._db.read() as session:
            rows = await session.execute(
                select(drivers.c.id, drivers.c.lat, drivers.c.lng).where(_FREE_WITH_POSITION)
            )
            return {r.id: Position(lat=r.lat, lng=r.lng) for r in rows}

    async def free_driver(self, driver_id: str) -> Position | None:
        async with self._db.read() as session:
            row = (
                await session.execute(
                    select(drivers.c.lat, drivers.c.lng).where(
                        and_(drivers.c.id == driver_id, _FREE_WITH_POSITION)
                    )
                )
            ).first()
            return Position(lat=row.lat, lng=row.lng) if row is not None else None

    async def assignments(self) -> dict[str, str]:
        """ride id -> driver id for every ride a driver is on now (for checks and admin)."""
        async with self._db.read() as session:
            rows = await session.execute(
                select(drivers.c.ride_id, drivers.c.id).where(drivers.c.ride_id.is_not(None))
            )
            return {r.ride_id: r.id for r in rows}


@dataclass(slots=True)
class _MemoryRide:
    status: str  # waiting | assigned | closed | unmatched
    pickup: Position | None
    at: datetime
    driver_id: str | None = None


@dataclass(slots=True)
class _MemoryDriver:
    online: bool
    at: datetime
    position: Position | None = None
    ride_id: str | None = None


class MemoryMatchStore:
    """The same contract in dicts. Atomic because no method awaits mid-change."""

    def __init__(self) -> None:
        self.rides: dict[str, _MemoryRide] = {}
        self.drivers: dict[str, _MemoryDriver] = {}

    async def add_ride(self, ride_id: str, pickup: Position, now: datetime) -> bool:
        if ride_id in self.rides:
            return False
        self.rides[ride_id] = _MemoryRide("waiting", pickup, now)
        return True

    async def set_driver(
        self,
        driver_id: str,
        *,
        online: bool,
        position: Position | None,
        now: datetime,
        on_leave: OnLeave | None = None,
    ) -> str | None:
        driver = self.drivers.setdefault(driver_id, _MemoryDriver(online, now))
        driver.online, driver.at = online, now
        if position is not None:
            driver.position = position
        if driver.ride_id is not None and not online and on_leave is not None:
            await on_leave(None, driver.ride_id)
        return driver.ride_id

    async def claim(
        self, driver_id: str, ride_id: str, now: datetime, *, on_commit: OnCommit | None = None
    ) -> Claim:
        ride = self.rides.get(ride_id)
        if ride is None or ride.status != "waiting":
            return Claim.RIDE_GONE
        driver = self.drivers.get(driver_id)
        if driver is None or not driver.online or driver.ride_id is not None:
            return Claim.DRIVER_TAKEN
        ride.status, ride.driver_id = "assigned", driver_id
        driver.ride_id, driver.at = ride_id, now
        if on_commit is not None:
            await on_commit(None)
        return Claim.OK

    async def close_ride(
        self,
        ride_id: str,
        now: datetime,
        *,
        driver_position: Position | None = None,
        off_duty: bool = False,
    ) -> str | None:
        ride = self.rides.setdefault(ride_id, _MemoryRide("closed", None, now))
        if ride.status in ("waiting", "assigned"):
            ride.status = "closed"
        for driver_id, driver in self.drivers.items():
            if driver.ride_id == ride_id:
                driver.ride_id, driver.at = None, now
                if driver_position is not None:
                    driver.position = driver_position
                if off_duty:
                    driver.online = False
                return driver_id
        return None

    async def expire(
        self, ride_id: str, now: datetime, *, on_commit: OnCommit | None = None
    ) -> bool:
        ride = self.rides.get(ride_id)
        if ride is None or ride.status != "waiting":
            return False
        ride.status = "unmatched"
        if on_commit is not None:
            await on_commit(None)
        return True

    async def release(self, ride_id: str, driver_id: str, now: datetime) -> WaitingRide | None:
        ride = self.rides.get(ride_id)
        if ride is None or ride.status != "assigned" or ride.driver_id != driver_id:
            return None
        assert ride.pickup is not None  # only a tombstone has none, and it is never assigned
        ride.status, ride.driver_id, ride.at = "waiting", None, now
        driver = self.drivers.get(driver_id)
        if driver is not None and driver.ride_id == ride_id:
            driver.ride_id, driver.online, driver.at = None, False, now
        return WaitingRide(ride_id, ride.pickup, now)

    async def expire_idle_drivers(self, before: datetime) -> list[str]:
        gone = [
            driver_id
            for driver_id, d in self.drivers.items()
            if d.online and d.ride_id is None and d.at < before
        ]
        for driver_id in gone:
            self.drivers[driver_id].online = False
        return gone

    async def waiting(self) -> list[WaitingRide]:
        rows = [
            WaitingRide(ride_id, r.pickup, r.at)
            for ride_id, r in self.rides.items()
            if r.status == "waiting" and r.pickup is not None
        ]
        return sorted(rows, key=lambda w: (w.requested_at, w.id))

    async def available_drivers(self) -> dict[str, Position]:
        return {
            driver_id: d.position
            for driver_id, d in self.drivers.items()
            if d.online and d.ride_id is None and d.position is not None
        }

    async def free_driver(self, driver_id: str) -> Position | None:
        d = self.drivers.get(driver_id)
        return d.position if d is not None and d.online and d.ride_id is None else None

    async def assignments(self) -> dict[str, str]:
        return {d.ride_id: driver_id for driver_id, d in self.drivers.items() if d.ride_id}
