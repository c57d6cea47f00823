"""The outbox and inbox tables, in the service's own database.

``corral_outbox``: events written in the producer's transaction, waiting for the relay.
Rows are selected by ``sent_at IS NULL`` ordered by ``(created_at, id)``, never by "id
greater than the last seen" (on PostgreSQL a row with a smaller key can commit later).

``corral_inbox``: one row per (consumer, event id) processed, written in the handler's
transaction, so a redelivered event is recognised and skipped.

Both are created at start under the schema lock the service's migrations take, so
replicas starting together on a fresh PostgreSQL database do not race each other's
``CREATE TABLE`` (``pg_type_typname_nsp_index``, "relation already exists").
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from corral.sdk._database import run_schema_locked

metadata = MetaData()

outbox = Table(
    "corral_outbox",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("topic", String(200), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("headers", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Index("corral_outbox_unsent", "sent_at", "created_at", "id"),
)

inbox = Table(
    "corral_inbox",
    metadata,
    Column("consumer", String(200), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("processed_at", Float, nullable=False),
)


async def create_tables(engine: AsyncEngine) -> None:
    """Create the outbox and inbox if missing, one replica at a time."""
    await run_schema_locked(engine, metadata.create_all)
