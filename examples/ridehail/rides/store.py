"""rides' own database: one row per ride, updated optimistically by version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.geo import Position
from rides.domain import Ride, RideStatus

metadata = MetaData()

rides = Table(
    "rides",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("rider_id", String(36), nullable=False),
    Column("driver_id", String(36), nullable=True),
    Column("status", String(20), nullable=False),
    Column("pickup_lat", Float, nullable=False),
    Column("pickup_lng", Float, nullable=False),
    Column("dropoff_lat", Float, nullable=False),
    Column("dropoff_lng", Float, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=True),
    Column("matched_at", DateTime(timezone=True), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("ended_reason", String(200), nullable=True),
    Column("fare_estimate", String(20), nullable=True),
    Column("currency", String(3), nullable=True),
    Column("distance_km", Float, nullable=True),
    Column("duration_s", Float, nullable=True),
    Column("fare", String(20), nullable=True),
    Column("payment_status", String(20), nullable=True),
    Column("version", Integer, nullable=False),
    Index("ix_rides_rider", "rider_id", "requested_at"),
    Index("ix_rides_driver", "driver_id", "requested_at"),
    Index("ix_rides_status_updated", "status", "updated_at"),
)


def _utc(value: datetime) -> datetime:
    """SQLite gives naive datetimes back (it stores no zone); they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def to_row(ride: Ride) -> dict[str, Any]:
    return {
        "id": ride.id,
        "rider_id": ride.rider_id,
        "driver_id": ride.driver_id,
        "status": str(ride.status),
        "pickup_lat": ride.pickup.lat,
        "pickup_lng": ride.pickup.lng,
        "dropoff_lat": ride.dropoff.lat,
        "dropoff_lng": ride.dropoff.lng,
        "requested_at": ride.requested_at,
        "updated_at": ride.updated_at,
        "matched_at": ride.matched_at,
        "started_at": ride.started_at,
        "completed_at": ride.completed_at,
        "ended_reason": ride.ended_reason,
        "fare_estimate": ride.fare_estimate,
        "currency": ride.currency,
        "distance_km": ride.distance_km,
        "duration_s": ride.duration_s,
        "version": ride.version,
    }


def from_row(row: Any) -> Ride:
    return Ride(
        id=row.id,
        rider_id=row.rider_id,
        pickup=Position(lat=row.pickup_lat, lng=row.pickup_lng),
        dropoff=Position(lat=row.dropoff_lat, lng=row.dropoff_lng),
        requested_at=_utc(row.requested_at),
        status=RideStatus(row.status),
        driver_id=row.driver_id,
        updated_at=_utc_or_none(row.updated_at),
        matched_at=_utc_or_none(row.matched_at),
        started_at=_utc_or_none(row.started_at),
        completed_at=_utc_or_none(row.completed_at),
        ended_reason=row.ended_reason,
        fare_estimate=row.fare_estimate,
        currency=row.currency,
        distance_km=row.distance_km,
        duration_s=row.duration_s,
        version=row.version,
    )


async def load(session: AsyncSession, ride_id: str) -> tuple[Ride, Any] | None:
    row = (await session.execute(select(rides).where(rides.c.id == ride_id))).first()
    return (from_row(row), row) if row is not None else None


async def add(session: AsyncSession, ride: Ride) -> None:
    await session.execute(insert(rides).values(**to_row(ride)))


async def save(session: AsyncSession, before: Ride, after: Ride) -> bool:
    """Write ``after`` if nobody changed the ride since ``before`` was read."""
    values = to_row(after)
    del values["id"]
    saved = await session.scalar(
        update(rides)
        .where(and_(rides.c.id == before.id, rides.c.version == before.version))
        .values(**values)
        .returning(rides.c.id)
    )
    return saved is not None


async def in_state_before(
    session: AsyncSession, status: RideStatus, cutoff: datetime, limit: int = 100
) -> list[str]:
    """Rides in ``status`` since before ``cutoff`` (every transition stamps
    ``updated_at``), the longest-waiting first."""
    rows = await session.execute(
        select(rides.c.id)
        .where(and_(rides.c.status == status.value, rides.c.updated_at < cutoff))
        .order_by(rides.c.updated_at)
        .limit(limit)
    )
    return list(rows.scalars())
