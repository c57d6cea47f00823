"""auth's own database: users and the signing-key ring."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table, delete, insert, select, text

from auth.keys import KeyState, SigningKey
from corral.sdk import Database

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("role", String(10), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(40), primary_key=True),
    Column("state", String(10), nullable=False),
    Column("private_pem", String(400), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class SqlKeyStore:
    """The key ring in auth's database; ``replace`` is a compare-and-swap in one transaction.

    The swap must serialize: two replicas that both read the old ring and both write their
    own would split the ring, and tokens signed with the key the gateway has not fetched
    are refused until its JWKS cache expires. On SQLite the SDK's BEGIN IMMEDIATE already
    serializes writers; PostgreSQL's READ COMMITTED does not (new random kids never
    collide, and a later DELETE sees the other replica's committed rows), so the
    transaction first takes a table lock that only one writer can hold."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def load(self) -> list[SigningKey]:
        async with self._db.sessionmaker() as session:
            rows = await session.execute(select(signing_keys))
            return [
                SigningKey(r.kid, KeyState(r.state), r.private_pem, _utc(r.created_at))
                for r in rows
            ]

    async def replace(self, expected: list[str], keys: list[SigningKey]) -> bool:
        from sqlalchemy.exc import IntegrityError

        try:
            async with self._db.transaction() as session:
                if session.get_bind().dialect.name == "postgresql":
                    # EXCLUSIVE blocks other writers (and lockers) but not plain reads.
                    await session.execute(text("LOCK TABLE signing_keys IN EXCLUSIVE MODE"))
                current = sorted((await session.scalars(select(signing_keys.c.kid))).all())
                if current != sorted(expected):
                    return False
                await session.execute(delete(signing_keys))
                await session.execute(
                    insert(signing_keys),
                    [
                        {
                            "kid": k.kid,
                            "state": str(k.state),
                            "private_pem": k.private_pem,
                            "created_at": k.created_at,
                        }
                        for k in keys
                    ],
                )
        except IntegrityError:
            return False
        return True
