"""What the benchmarks share: a free loopback port, percentiles, wrk's numbers, results.

Each benchmark runs as ``uv run python bench/<name>.py``, so this folder is on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def parse_wrk(out: str) -> dict[str, float]:
    """From ``wrk --latency`` output: requests, req/s, p50 and p99 in ms, non-2xx count."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def latency(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        assert m, out
        return float(m.group(1)) * _UNITS[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    requests = re.search(r"(\d+) requests in", out)
    return {
        "requests": float(requests.group(1)) if requests else 0.0,
        "rps": rps,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def git_commit() -> str:
    """The checkout's short commit, ``+dirty`` when tracked files differ from it: a result
    is only comparable with the code that produced it."""
    root = RESULTS.parent.parent
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (head or "unknown") + ("+dirty" if dirty else "")


def write_result(name: str, data: Any) -> Path:
    """``data`` as indented JSON in ``bench/results/<name>``; returns the path.

    A result that does not say which commit and what machine load produced it gets both
    here (``commit``, ``load_average_at_write``), so no figure is left without them."""
    if isinstance(data, dict):
        data.setdefault("commit", git_commit())
        data.setdefault("load_average_at_write", [round(x, 2) for x in os.getloadavg()])
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
