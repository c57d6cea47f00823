"""CPU of one SQLite transaction through the SDK's Database: aiosqlite's own cursor
against one trip per statement (corral.sdk._sqlite_trips), side by side in one run.

    uv run python bench/sqlite_transactions.py [--n 300] [--rounds 5]

Each round runs ``--n`` write transactions (an INSERT and a SELECT, as a request's
transaction with its outbox row would) and ``--n`` read transactions (one SELECT) on
each side, alternating sides; the figure is the median over rounds of the process's CPU
per transaction. For scale, the same write transaction on sqlite3 directly (no thread,
no SQLAlchemy). Both sides use the SDK's one-trip BEGIN. The machine is shared: the load
average is recorded. Writes bench/results/sqlite_transactions.json.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiosqlite
import uvloop
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from corral.sdk import Database

metadata = MetaData()
rows = Table("t", metadata, Column("id", Integer, primary_key=True), Column("v", String(50)))


async def per_transaction(db: Database, n: int) -> tuple[float, float]:
    """Microseconds of CPU per write transaction and per read transaction."""
    began = time.process_time()
    for i in range(n):
        async with db.transaction() as session:
            await session.execute(insert(rows).values(v="x"))
            (await session.execute(select(rows.c.id).where(rows.c.id == i + 1))).first()
    written = time.process_time()
    for i in range(n):
        async with db.read() as session:
            (await session.execute(select(rows.c.id).where(rows.c.id == i + 1))).first()
    read = time.process_time()
    return (written - began) / n * 1e6, (read - written) / n * 1e6


def inline_write(path: str, n: int) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR(50))")
    began = time.process_time()
    for i in range(n):
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO t (v) VALUES (?)", ("x",))
        connection.execute("SELECT id FROM t WHERE id = ?", (i + 1,)).fetchone()
        connection.execute("COMMIT")
    spent = time.process_time() - began
    connection.close()
    return spent / n * 1e6


async def run(args: argparse.Namespace, folder: str) -> dict[str, Any]:
    base_path = os.path.join(folder, "aiosqlite.db")
    # The caller's own async_creator: the SDK leaves aiosqlite's connection as it is.
    base = Database(
        metadata=metadata, engine_options={"async_creator": lambda: aiosqlite.connect(base_path)}
    )
    await base.start(f"sqlite:///{base_path}")
    trips = Database(metadata=metadata)
    await trips.start(f"sqlite:///{os.path.join(folder, 'trips.db')}")
    load = os.getloadavg()
    samples: dict[str, list[tuple[float, float]]] = {"aiosqlite_cursor": [], "one_trip": []}
    try:
        for _ in range(args.rounds):
            samples["aiosqlite_cursor"].append(await per_transaction(base, args.n))
            samples["one_trip"].append(await per_transaction(trips, args.n))
    finally:
        await base.stop()
        await trips.stop()
    figures = {
        side: {
            "write_txn_cpu_us": round(statistics.median(s[0] for s in got), 1),
            "read_txn_cpu_us": round(statistics.median(s[1] for s in got), 1),
        }
        for side, got in samples.items()
    }
    before, after = figures["aiosqlite_cursor"], figures["one_trip"]
    return {
        "benchmark": "sqlite_transactions",
        "command": " ".join(["uv run python bench/sqlite_transactions.py", *sys.argv[1:]]),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "loadavg": [round(x, 2) for x in load],
        "transactions_per_round": args.n,
        "rounds": args.rounds,
        "figures": figures,
        "one_trip_vs_aiosqlite_cursor": {
            "write": round(after["write_txn_cpu_us"] / before["write_txn_cpu_us"], 2),
            "read": round(after["read_txn_cpu_us"] / before["read_txn_cpu_us"], 2),
        },
        "sqlite3_inline_write_txn_cpu_us": round(
            inline_write(os.path.join(folder, "inline.db"), args.n), 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sqlite-transactions-") as folder:
        result = uvloop.run(run(args, folder))
    write_result("sqlite_transactions.json", result)
    print(result)


if __name__ == "__main__":
    main()
