"""Autoscaling, demonstrated on ridehail: the arrival of riders ramps up and back down
while ``matching`` scales on its consumer lag of ``ride.requested``, against the same
ramp with ``matching`` fixed at one replica, in the same run.

Phases (each a fresh ``ridehail sim`` against the running system): quiet (RIDERSxDRIVERS
low), busy (high), quiet again. Recorded: matching's replicas over time (sampled every
0.5 s from the status), requested -> matched p50/p99 of the busy phase, the time from the
busy phase's start to the first scale-out and from its end to the return to the minimum.
The 2 cores are shared: the load average is recorded alongside.

    uv run python bench/autoscale.py [--quiet 4x3] [--busy 24x16] [--phase 25]

Writes bench/results/autoscale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "examples" / "ridehail"))
sys.path.insert(0, str(ROOT / "examples" / "ridehail"))
from _common import write_result  # noqa: E402
from ridehail_cli.api import ADMIN_EMAIL, ADMIN_PASSWORD  # noqa: E402
from ridehail_cli.sim import pct, simulate  # noqa: E402
from ridehail_system import running_system  # noqa: E402

from corral.broker import control_url  # noqa: E402

POLICY = (
    "    autoscale:\n"
    "      min: 1\n"
    "      max: 3\n"
    "      target: {TARGET}\n"
    "      stabilization: {up: 0s, down: 10s}\n"
    "      cooldown: {up: 2s, down: 10s}\n"
)


def edit(target: str | None):  # type: ignore[no-untyped-def]
    def change(text: str) -> str:
        matching = "    app: matching.app:svc\n    replicas: 2\n"
        assert matching in text
        policy = POLICY.replace("{TARGET}", target) if target else ""
        return text.replace(matching, "    app: matching.app:svc\n    replicas: 1\n" + policy)

    return change


async def run(args: argparse.Namespace, target: str | None) -> dict[str, Any]:
    autoscaled = target is not None
    quiet = [int(n) for n in args.quiet.split("x")]
    busy = [int(n) for n in args.busy.split("x")]
    with tempfile.TemporaryDirectory(prefix="autoscale-bench-") as tmp:
        async with running_system(Path(tmp), edit=edit(target)) as (gateway, session):
            session.autoscaler.period = 1.0
            # The control plane's credentials: the sim reads the dead letters too.
            nats_url = control_url(session.plan.state_dir)
            began = time.monotonic()
            timeline: list[tuple[float, int]] = []
            stop = asyncio.Event()

            reasons_seen: list[str] = []

            async def sample() -> None:
                while not stop.is_set():
                    now = session.status()
                    replicas = now.services["matching"].replicas
                    latest = now.model_dump().get("autoscale", {}).get("matching", {})
                    if latest.get("reason"):
                        # The measure moves every round: keep the kind of reason only.
                        reasons_seen.append(
                            latest["reason"].split(" vs ")[0].rstrip("0123456789. ")
                        )
                    timeline.append((round(time.monotonic() - began, 2), replicas))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)

            sampling = asyncio.create_task(sample())
            phases: dict[str, Any] = {}
            load_before = os.getloadavg()
            for name, (riders, drivers) in (("quiet", quiet), ("busy", busy), ("after", quiet)):
                report: dict[str, Any] = {}
                start = time.monotonic() - began
                code = await simulate(
                    gateway,
                    riders=riders,
                    drivers=drivers,
                    duration=args.phase,
                    drain=5.0,
                    cancel_rate=0.1,
                    speed=1.0,
                    seed=args.seed,
                    admin_email=ADMIN_EMAIL,
                    admin_password=ADMIN_PASSWORD,
                    nats_url=nats_url,
                    report=report,
                )
                matched = report.get("flow", {}).get("requested->matched", [])
                phases[name] = {
                    "riders": riders,
                    "drivers": drivers,
                    "start_s": round(start, 2),
                    "end_s": round(time.monotonic() - began, 2),
                    "sim_exit_code": code,
                    "rides_requested": report.get("counts", {}).get("requested", 0),
                    "requested_to_matched_ms": {
                        "n": len(matched),
                        "p50": round(pct(matched, 0.5) * 1000, 1) if matched else None,
                        "p99": round(pct(matched, 0.99) * 1000, 1) if matched else None,
                    },
                }
            # Long enough for the down window and cooldown to bring it back.
            deadline = time.monotonic() + 60
            while autoscaled and timeline[-1][1] > 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            stop.set()
            await sampling
            decisions = session.status().model_dump().get("autoscale", {}).get("matching", {})
            reasons = sorted(set(reasons_seen))
    busy_start, busy_end = phases["busy"]["start_s"], phases["busy"]["end_s"]
    out = next((t for t, r in timeline if t >= busy_start and r > 1), None)
    back = next((t for t, r in timeline if t >= busy_end and r == 1), None)
    return {
        "matching": f"autoscaled 1-3, target {target}" if autoscaled else "fixed at 1 replica",
        "reasons_seen": reasons,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "phases": phases,
        "max_replicas": max(r for _, r in timeline),
        "scale_out_after_busy_start_s": round(out - busy_start, 2) if out is not None else None,
        "back_to_min_after_busy_end_s": round(back - busy_end, 2) if back is not None else None,
        "replicas_over_time": _changes(timeline),
        "decisions": decisions.get("changes", []),
    }


def _changes(timeline: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """The samples where the count changed (and the first and last)."""
    kept = [p for i, p in enumerate(timeline) if i == 0 or p[1] != timeline[i - 1][1]]
    return kept + ([timeline[-1]] if timeline and kept[-1] != timeline[-1] else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", default="4x3", help="RIDERSxDRIVERS of the quiet phases")
    parser.add_argument("--busy", default="24x16", help="RIDERSxDRIVERS of the busy phase")
    parser.add_argument("--phase", type=float, default=25.0, help="seconds per phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", default="{cpu: 250m}", help="matching's autoscale target")
    args = parser.parse_args()
    fixed = asyncio.run(run(args, None))
    scaled = asyncio.run(run(args, args.target))
    busy_fixed = fixed["phases"]["busy"]["requested_to_matched_ms"]["p99"]
    busy_scaled = scaled["phases"]["busy"]["requested_to_matched_ms"]["p99"]
    result = {
        "benchmark": "autoscale",
        "command": " ".join(["uv run python bench/autoscale.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "system": "examples/ridehail (SQLite, embedded NATS with sync_interval always)",
        "fixed": fixed,
        "autoscaled": scaled,
        "busy_p99_autoscaled_over_fixed": round(busy_scaled / busy_fixed, 2)
        if busy_fixed and busy_scaled
        else None,
    }
    print(write_result("autoscale.json", result))
    print({k: v for k, v in result.items() if k not in ("fixed", "autoscaled")})
    for name in ("fixed", "autoscaled"):
        run_ = result[name]
        print(
            name,
            run_["max_replicas"],
            run_["scale_out_after_busy_start_s"],
            run_["back_to_min_after_busy_end_s"],
            run_["phases"]["busy"],
        )


if __name__ == "__main__":
    main()
