"""payments' own database: one row per ride (the primary key is the ride id)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table

metadata = MetaData()

payments = Table(
    "payments",
    metadata,
    Column("ride_id", String(36), primary_key=True),  # one payment per ride, ever
    Column("rider_id", String(36), nullable=False),
    Column("amount", String(20), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(10), nullable=False),
    Column("idempotency_key", String(64), nullable=False, unique=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("charge_id", String(64), nullable=True),
    Column("last_error", String(300), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
