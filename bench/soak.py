"""ridehail under continuous faults for a bounded time, its invariants checked throughout.

    uv run python bench/soak.py [--duration 300] [--env postgres] [--riders 6 --drivers 4]

Starts its own ridehail (examples/ridehail copied into a temporary folder: every service
a process, the embedded NATS with sync_interval always, Envoy; ``--env postgres`` merges
corral.postgres.yaml), runs the city simulator for ``--duration`` seconds under the fault
schedule, and checks the invariants throughout and the recovery times: the logic is
tests/examples/ridehail/ridehail_soak.py, which the 60 s CI test
(tests/examples/ridehail/test_soak_short.py) runs too, without the timing bars.
Writes bench/results/soak.json (``--out`` for another name), with the commit it ran on
and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "examples" / "ridehail"))
sys.path.insert(0, str(ROOT / "examples" / "ridehail"))
from _common import write_result  # noqa: E402
from ridehail_soak import problems, soak  # noqa: E402


def commit() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--drain", type=float, default=60.0)
    parser.add_argument("--riders", type=int, default=6)
    parser.add_argument("--drivers", type=int, default=4)
    parser.add_argument("--env", default=None, help="postgres: corral.postgres.yaml merged")
    parser.add_argument("--out", default="soak.json")
    args = parser.parse_args()
    started = time.time()
    load_before = os.getloadavg()
    result = asyncio.run(
        soak(
            duration=args.duration,
            drain=args.drain,
            riders=args.riders,
            drivers=args.drivers,
            env=args.env,
        )
    )
    result["broken"] = problems(result)
    result["held"] = not result["broken"]
    path = ROOT / "bench" / "results" / args.out
    existing: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        existing = json.loads(path.read_text())
    runs = existing.get("runs", {}) if isinstance(existing, dict) else {}
    runs[result["env"]] = {
        **result,
        "commit": commit(),
        "started_at": started,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average": os.getloadavg(),
        "load_average_before": load_before,
        "nats_sync_interval": "always",
    }
    written = write_result(args.out, {"runs": runs})
    print(f"{'held' if result['held'] else 'NOT held'}: {written}")
    for line in result["broken"]:
        print(f"  {line}")
    sys.exit(0 if result["held"] else 1)


if __name__ == "__main__":
    main()
