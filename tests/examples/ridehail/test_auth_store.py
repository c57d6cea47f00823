"""auth's key store on real databases: two replicas creating or rotating the ring at the
same moment must agree on ONE ring (the compare-and-swap in SqlKeyStore.replace).

A ring split across replicas is not cosmetic: the gateway caches the JWKS it fetched from
one replica, so tokens signed by the other replica's key are refused until the cache
expires (this broke the PostgreSQL end-to-end tour now and then)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from auth.app import ensure_admin
from auth.keys import KeyRing, KeyState, generate_key
from auth.passwords import Passwords
from auth.store import SqlKeyStore, metadata, users
from scratch_postgres import scratch_database
from sqlalchemy import select

from corral.sdk import Database

pytestmark = pytest.mark.asyncio
NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'auth.db'}"
        return
    async with scratch_database("ridehail_auth") as url:
        yield url


@pytest.fixture
async def databases(database_url: str) -> AsyncIterator[list[Database]]:
    """Four replicas' handles on one database, each with its own connection pool."""
    handles = [Database(metadata=metadata) for _ in range(4)]
    for db in handles:
        await db.start(database_url)
    yield handles
    for db in handles:
        await db.stop()


@pytest.fixture
def replicas(databases: list[Database]) -> list[SqlKeyStore]:
    """Key stores of four replicas over one database."""
    return [SqlKeyStore(db) for db in databases]


async def test_concurrent_creation_has_exactly_one_winner(replicas: list[SqlKeyStore]) -> None:
    """Every replica tries to create the ring on an empty table at once: one wins, the
    table holds exactly the winner's keys, the others are told they lost."""
    for round_ in range(10):
        expected = [k.kid for k in await replicas[0].load()]
        proposals = [
            [generate_key(KeyState.CURRENT, NOW), generate_key(KeyState.NEXT, NOW)]
            for _ in replicas
        ]
        won = await asyncio.gather(
            *(
                store.replace(expected, keys)
                for store, keys in zip(replicas, proposals, strict=True)
            )
        )
        assert won.count(True) == 1, f"round {round_}: {won}"
        winner = proposals[won.index(True)]
        stored = sorted(k.kid for k in await replicas[1].load())
        assert stored == sorted(k.kid for k in winner), f"round {round_}"


async def test_replicas_starting_together_sign_with_the_same_key(
    replicas: list[SqlKeyStore],
) -> None:
    """KeyRing.ensure on every replica at once (as `corral up` starts auth's replicas):
    all end up with one current key, and the JWKS each serves is the same."""
    rings = [KeyRing(store) for store in replicas]
    await asyncio.gather(*(ring.ensure(NOW) for ring in rings))
    for ring in rings:
        await ring.refresh()
    assert len({ring.current.kid for ring in rings}) == 1
    assert all(ring.jwks() == rings[0].jwks() for ring in rings)
    assert len(rings[0].keys) == 2


async def test_replicas_starting_together_create_one_admin(databases: list[Database]) -> None:
    """Every replica makes sure the operator's admin account exists as it starts (all at
    once under `corral up`): one creates it, none fails to start, and it can log in."""
    hasher = Passwords(time_cost=1, memory_kib=8)
    for round_ in range(5):
        email = f"admin-{round_}@ridehail.local"
        made = await asyncio.gather(
            *(ensure_admin(db, hasher, email, "change-me-admin") for db in databases)
        )
        assert made.count(True) == 1, f"round {round_}: {made}"
        async with databases[0].sessionmaker() as session:
            rows = (await session.execute(select(users).where(users.c.email == email))).all()
        assert len(rows) == 1
        assert hasher.verify(rows[0].password_hash, "change-me-admin")
