"""The metric history query (TelemetryStore.history): what the Services view asks every
10 s, against a store holding a day of rollups (the last hour in 10 s buckets, the 23
before in 5 min buckets, as retention leaves them).

Each service gets the keys a real scrape writes per route (statuses, latency buckets,
latency sums); the query turns one step's increments back into RED. Measured on a reader
connection, wall-clock and CPU time per query, with the machine's load recorded.

    uv run python bench/metric_history.py
    uv run python bench/metric_history.py --services 20 --routes 8
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import percentile, write_result

from corral.telemetry import TelemetryStore

BOUNDS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "+Inf")
NOW = 1_800_000_000.0


def deltas(routes: int) -> dict[tuple[str, ...], float]:
    """One scrape round's increments of one service (the window's key tuples)."""
    out: dict[tuple[str, ...], float] = {}
    for r in range(routes):
        route = f"/route/{r}"
        out[("http", "GET", route, "200")] = 20.0
        out[("http", "GET", route, "503")] = 1.0
        out[("latency_sum", "GET", route, "")] = 0.4
        for i, bound in enumerate(BOUNDS):
            out[("bucket", "GET", route, bound)] = float(21 - 2 * i if i < 10 else 0)
    return out


def timed(fn: object, repeat: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()  # type: ignore[operator]
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return {
        "p50_ms": round(percentile(walls, 0.5), 2),
        "p95_ms": round(percentile(walls, 0.95), 2),
        "cpu_p50_ms": round(percentile(cpus, 0.5), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--routes", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = TelemetryStore(Path(folder) / "telemetry.db", clock=lambda: NOW)
        one = deltas(args.routes)
        # A day of 2 s scrape rounds is 43,200 rounds per service: put as the 10 s and
        # 5 min sums retention would have left (same rows, a fraction of the time).
        for t in range(int(NOW - 86400), int(NOW - 3600), 300):
            store.put_metrics(
                float(t),
                {f"svc{s}": {k: v * 150 for k, v in one.items()} for s in range(args.services)},
            )
        for t in range(int(NOW - 3600), int(NOW), 10):
            store.put_metrics(
                float(t),
                {f"svc{s}": {k: v * 5 for k, v in one.items()} for s in range(args.services)},
            )
        store.flush(timeout=600)
        rows = store.counts()["metrics"]
        queries = {
            "last_hour_30s_steps": lambda: store.history(
                "svc3", since=NOW - 3600, until=NOW, step=30
            ),
            "last_6h_120s_steps": lambda: store.history(
                "svc3", since=NOW - 21600, until=NOW, step=120
            ),
            "last_24h_300s_steps": lambda: store.history(
                "svc3", since=NOW - 86400, until=NOW, step=300
            ),
        }
        check = queries["last_hour_30s_steps"]()
        assert any(check["requests"]), "the history is empty: the benchmark measured nothing"
        results = {name: timed(fn, args.repeat) for name, fn in queries.items()}
        size = os.path.getsize(store.path)
        store.close()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    out = {
        "what": "TelemetryStore.history (GET /v1/telemetry/services/{s}/history): per-step RED "
        "from a day of rollups, one service of several, on a reader connection",
        "commit": commit,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "stored": {
            "services": args.services,
            "routes_per_service": args.routes,
            "metric_rows": rows,
            "file_mb": round(size / 2**20, 1),
        },
        "queries": results,
        "goal_query_p95_ms": 100,
    }
    path = write_result("metric_history.json", out)
    print(path.read_text())
    sys.exit(0)


if __name__ == "__main__":
    main()
