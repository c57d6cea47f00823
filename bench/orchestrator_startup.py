"""Orchestrator benchmarks (not tests: timing goals live here, never in assertions).

1. ``Orchestrator.up`` of 10 trivial HTTP services until all are ready, against starting
   the same 10 processes from a plain shell script and polling their health the same
   way (the runtime's own prober and fast-poll schedule), in the same run, alternating,
   several rounds. Goal: ratio within 1.3x.
2. Time from ``kill -9`` of an instance to its replacement being ready, for a service
   that starts in about 0.3 s. Goal: under 1 s. Each kill is a first crash (the bench
   waits out ``reset_after``, set to 1 s), so the backoff is ``backoff.initial`` (0.1 s,
   the default).

Run: ``uv run python bench/orchestrator_startup.py [--rounds N]``; writes
bench/results/orchestrator.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import write_result

from corral.manifest import parse
from corral.plan import CheckKind, CheckPlan, resolve
from corral.runtime._checks import CheckTarget, Prober
from corral.runtime.orchestrator import Orchestrator

SERVICES = 10

SERVICE_CODE = """
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
time.sleep(float(os.environ.get("START_DELAY", "0")))
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def manifest_text(script: Path, *, count: int, start_delay: float = 0.0) -> str:
    services = {
        f"svc{i}": {
            "command": [sys.executable, str(script)],
            "database": "none",
            "readiness": {"http": "/readyz", "period": "1s"},
            "env": {"START_DELAY": str(start_delay)},
            "restart": {"backoff": {"reset_after": "1s"}},
        }
        for i in range(count)
    }
    return json.dumps({"name": "bench", "services": services})


def orchestrator_for(root: Path, text: str) -> Orchestrator:
    """An orchestrator of the manifest ``text``, written to ``root/corral.yaml``."""
    path = root / "corral.yaml"
    path.write_text(text)
    manifest = parse(text, path)
    return Orchestrator(resolve(manifest, python=sys.executable), manifest_path=manifest.path)


async def orchestrator_round(root: Path, script: Path) -> float:
    orch = orchestrator_for(root, manifest_text(script, count=SERVICES))
    began = time.perf_counter()
    await orch.up()
    elapsed = time.perf_counter() - began
    await orch.down()
    return elapsed


async def shell_round(script: Path, ports: list[int], *, tight: bool = False) -> float:
    """The baseline: one shell starts the 10 processes; we poll each like the runtime
    (50 ms growing 1.5x up to the period), or every 10 ms when ``tight`` (the best a
    script can do, so the figure cannot flatter the runtime's schedule)."""
    lines = [f"PORT={port} {sys.executable} {script} &" for port in ports] + ["wait"]
    prober = Prober()
    check = CheckPlan(CheckKind.HTTP, path="/readyz", period=1.0)
    began = time.perf_counter()
    shell = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", "\n".join(lines), start_new_session=True
    )

    async def until_ready(port: int) -> None:
        target = CheckTarget("127.0.0.1", port, {}, Path())
        interval = 0.01 if tight else 0.05  # 0.05: the runtime's fast readiness schedule
        while not (await prober.probe(check, target))[0]:
            await asyncio.sleep(interval)
            if not tight:
                interval = min(interval * 1.5, check.period)

    await asyncio.gather(*(until_ready(port) for port in ports))
    elapsed = time.perf_counter() - began
    os.killpg(shell.pid, signal.SIGTERM)
    await shell.wait()
    await prober.close()
    return elapsed


def free_ports(count: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(count)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


async def kill_to_ready(root: Path, script: Path, rounds: int) -> list[float]:
    orch = orchestrator_for(root, manifest_text(script, count=1, start_delay=0.3))
    await orch.up()
    try:
        return [seconds for seconds, _ in await kills_to_ready(orch, "svc0-1", rounds)]
    finally:
        await orch.down()


async def kills_to_ready(
    orch: Orchestrator,
    instance: str,
    rounds: int,
    on_ready: Callable[[int], None] | None = None,
) -> list[tuple[float, int]]:
    """``rounds`` times: SIGKILL ``instance`` (a first crash: past a 1 s ``reset_after``)
    and wait for its replacement to serve; each (seconds, the replacement's pid).
    ``on_ready(pid)`` runs as soon as the replacement serves."""
    samples = []
    for _ in range(rounds):
        await asyncio.sleep(1.2)  # past reset_after: this kill is a first crash
        old = orch.registry.snapshot().get(instance)
        assert old is not None
        assert old.pid is not None
        began = time.perf_counter()
        os.kill(old.pid, signal.SIGKILL)
        async for snap in orch.registry.watch():
            record = snap.get(instance)
            if record and record.serving and record.pid is not None and record.pid != old.pid:
                samples.append((time.perf_counter() - began, record.pid))
                if on_ready is not None:
                    on_ready(record.pid)
                break
    return samples


async def main(rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        script = root / "svc.py"
        script.write_text(SERVICE_CODE)
        await shell_round(script, free_ports(SERVICES))  # warm caches for both sides
        ours: list[float] = []
        shell: list[float] = []
        tight: list[float] = []
        for index in range(rounds):
            steps = [
                lambda: orchestrator_round(root, script),
                lambda: shell_round(script, free_ports(SERVICES)),
                lambda: shell_round(script, free_ports(SERVICES), tight=True),
            ]
            sinks = [ours, shell, tight]
            shift = index % 3  # rotate who goes first
            for step, sink in zip(
                steps[shift:] + steps[:shift], sinks[shift:] + sinks[:shift], strict=True
            ):
                sink.append(await step())
        kills = await kill_to_ready(root, script, rounds)
    ratio = statistics.median(ours) / statistics.median(shell)
    ratio_tight = statistics.median(ours) / statistics.median(tight)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "up_10_services": {
            "rounds": rounds,
            "orchestrator_seconds": [round(x, 4) for x in ours],
            "shell_seconds": [round(x, 4) for x in shell],
            "shell_tight_poll_seconds": [round(x, 4) for x in tight],
            "orchestrator_median": round(statistics.median(ours), 4),
            "shell_median": round(statistics.median(shell), 4),
            "shell_tight_poll_median": round(statistics.median(tight), 4),
            "ratio": round(ratio, 3),
            "ratio_vs_tight_poll": round(ratio_tight, 3),
            "goal_ratio": 1.3,
        },
        "kill9_to_ready": {
            "service_start_seconds": 0.3,
            "backoff_initial_seconds": 0.1,
            "seconds": [round(x, 4) for x in kills],
            "median": round(statistics.median(kills), 4),
            "max": round(max(kills), 4),
            "goal_seconds": 1.0,
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    result = asyncio.run(main(args.rounds))
    write_result("orchestrator.json", result)
    print(json.dumps(result, indent=2))
