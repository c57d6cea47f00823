"""Writes N rows to a SQLite file through corral.sdk.Database (one process of a race)."""

import asyncio
import sys

from sqlalchemy import text

from corral.sdk import Database


async def main(url: str, tag: str, count: int) -> None:
    db = Database()
    await db.start(url)
    for i in range(count):
        async with db.transaction() as session:
            n = (await session.execute(text("SELECT count(*) FROM log"))).scalar_one()
            await session.execute(
                text("INSERT INTO log (who, seen) VALUES (:w, :n)"), {"w": f"{tag}-{i}", "n": n}
            )
    await db.stop()


asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
