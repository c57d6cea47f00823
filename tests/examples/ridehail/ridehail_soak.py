"""ridehail under continuous faults, its invariants checked throughout: the logic
``bench/soak.py`` (5 minutes, timing bars, bench/results/soak.json) and the CI test
``test_soak_short.py`` (60 s, invariants only) share.

The fault schedule, through the control plane's chaos (the same code ``corral chaos``
and experiment files use):

- every 10 s a replica is killed (rides, matching, auth, in turn);
- every 30 s one is paused for 5 s (matching, rides, in turn);
- every 60 s the NATS server restarts;
- from a third of the run, the payment provider fails 30% of charges for 30 s (a live
  setting, as ``corral config set``).

Checked throughout (every 5 s, through the admin API): no ride charged twice, no driver
on two rides. After each fault, the time until every instance is ready again. At the
end: the simulator's own verdict (every completed ride paid exactly once or parked in
the dead letters, nothing stuck, no unexplained dead letter); the parked payments
replayed and every completed ride then paid; the share of HTTP attempts that succeeded
(the simulated apps retry 5xx and dropped connections, as apps do); and, after the
system is stopped, that none of its processes is left.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
from ridehail_cli.api import ADMIN_EMAIL, ADMIN_PASSWORD, Person
from ridehail_cli.check import check
from ridehail_cli.invariants import drivers_on_two_rides
from ridehail_cli.sim import simulate
from ridehail_system import running_system

from corral.broker import control_url
from corral.control import SystemSession

READY_WITHIN_S = 10.0
"""Every instance ready again this soon after each fault (the issue's bar)."""
KILL_EVERY_S, PAUSE_EVERY_S, PAUSE_FOR_S, NATS_EVERY_S = 10.0, 30.0, 5.0, 60.0
PROVIDER_FAILING_S, PROVIDER_FAILURE_RATE = 30.0, 0.3
CHECK_EVERY_S = 5.0
REPLAY_WITHIN_S = 60.0
"""After the replay of parked payments, time for every completed ride to be paid."""
KILLED = ("rides", "matching", "auth")
NATS = "corral-nats"
PAUSED = ("matching", "rides")


def ready_services(session: SystemSession) -> set[str]:
    """Services (components included) with every replica ready right now."""
    return {n for n, s in session.status().services.items() if s.ready >= s.replicas}


def pids(session: SystemSession) -> set[int]:
    return {i.pid for i in session.status().instances if i.pid}


class Soak:
    def __init__(self, session: SystemSession, gateway: str, duration: float) -> None:
        self.session = session
        self.gateway = gateway
        self.duration = duration
        self.faults: Counter[str] = Counter()
        self.fault_errors: list[str] = []
        self.pending: list[tuple[float, str, str]] = []
        """(when a fault's harm ended, what it was, the service it hit), not yet
        followed by that service's every replica ready."""
        self.recoveries: list[tuple[str, float]] = []
        self.violations: list[str] = []
        self.checks = 0
        self.skipped_checks = 0
        self.seen_pids: set[int] = set()
        self.done = asyncio.Event()

    async def faults_schedule(self) -> None:
        start = time.monotonic()
        chaos = self.session.chaos
        kills = pauses = 0
        next_kill, next_pause, next_nats = KILL_EVERY_S, PAUSE_EVERY_S / 2, NATS_EVERY_S / 2
        provider_at = self.duration / 3
        provider_state = "before"
        while (now := time.monotonic() - start) < self.duration:
            try:
                if now >= next_kill:
                    target = KILLED[kills % len(KILLED)]
                    await chaos.kill(target)
                    self.fault(f"kill {target}", target)
                    kills += 1
                    next_kill += KILL_EVERY_S
                if now >= next_pause:
                    target = PAUSED[pauses % len(PAUSED)]
                    await chaos.pause(target, PAUSE_FOR_S)
                    self.fault(f"pause {target} {PAUSE_FOR_S:g}s", target, after=PAUSE_FOR_S)
                    pauses += 1
                    next_pause += PAUSE_EVERY_S
                if now >= next_nats:
                    await chaos.nats("restart", None)
                    self.fault("nats restart", NATS)
                    next_nats += NATS_EVERY_S
                if provider_state == "before" and now >= provider_at:
                    await self.provider(PROVIDER_FAILURE_RATE)
                    self.faults[f"provider failing {PROVIDER_FAILURE_RATE:.0%}"] += 1
                    provider_state = "failing"
                elif provider_state == "failing" and now >= provider_at + PROVIDER_FAILING_S:
                    await self.provider(None)
                    provider_state = "back"
            except Exception as exc:  # a refused fault (nothing running at that instant)
                self.fault_errors.append(f"{now:.1f}s: {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.2)
        if provider_state == "failing":
            await self.provider(None)
        await chaos.stop_all()

    def fault(self, what: str, service: str, *, after: float = 0.0) -> None:
        self.faults[what.split()[0]] += 1
        self.pending.append((time.monotonic() + after, what, service))

    async def provider(self, rate: float | None) -> None:
        manifest = self.session.manifest.path
        args = (
            ["set", "fakepay", f"FAKEPAY_FAILURE_RATE={rate}"]
            if rate is not None
            else ["unset", "fakepay", "FAKEPAY_FAILURE_RATE"]
        )
        command = [sys.executable, "-m", "corral", "config", *args, "-f", str(manifest)]
        done = await asyncio.create_subprocess_exec(
            *command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, err = await done.communicate()
        if done.returncode != 0:
            raise RuntimeError(err.decode().strip())

    async def readiness(self) -> None:
        """A fault is recovered from once its harm has ended and every replica of the
        service it hit is ready again (other services may be down by then: the next
        fault comes every few seconds, so "the whole system ready" rarely happens)."""
        while not self.done.is_set():
            self.seen_pids |= pids(self.session)
            now = time.monotonic()
            if self.pending:
                ready = ready_services(self.session)
                for entry in [p for p in self.pending if p[0] <= now and p[2] in ready]:
                    self.recoveries.append((entry[1], round(max(0.0, now - entry[0]), 2)))
                    self.pending.remove(entry)
            await asyncio.sleep(0.2)

    async def invariants(self) -> None:
        """No double charge, no driver on two rides: at any moment, not only at the end."""
        async with httpx.AsyncClient(base_url=self.gateway, timeout=15) as http:
            admin = await Person.admin(http, ADMIN_EMAIL, ADMIN_PASSWORD)
            while not self.done.is_set():
                await asyncio.sleep(CHECK_EVERY_S)
                try:
                    await self.check(admin)
                except Exception:  # a fault in the way (a 503): the next round tries again
                    self.skipped_checks += 1

    async def check(self, admin: Person) -> None:
        charges = (await admin.call("GET", "/admin/fakepay/charges")).json()["charges"]
        rides = (await admin.call("GET", "/rides?limit=1000")).json()
        busy = (await admin.call("GET", "/admin/matching/assignments")).json()
        self.checks += 1
        per_ride = Counter(str(c["reference"]) for c in charges)
        self.violations += [f"ride {r} charged {n} times" for r, n in per_ride.items() if n > 1]
        self.violations += drivers_on_two_rides({r["id"]: r for r in rides}, busy)


async def soak(
    *,
    duration: float,
    drain: float,
    riders: int,
    drivers: int,
    env: str | None = None,
    replay_within: float = REPLAY_WITHIN_S,
    settle: float = 30.0,
) -> dict[str, Any]:
    """ridehail up in a temporary folder, the city for ``duration`` s (then ``drain`` s
    for rides in flight) under the fault schedule, the invariants checked throughout;
    parked payments replayed and every completed ride then paid; ridehail down and no
    process of it left. ``settle``: how long to wait for the last faults' recoveries to be
    timed. The figures and verdicts, as a dict (see :func:`problems`)."""
    with tempfile.TemporaryDirectory(prefix="corral-soak-") as tmp:
        async with running_system(Path(tmp), environment=env) as (gateway, session):
            nats_url = control_url(session.plan.state_dir)
            run = Soak(session, gateway, duration)
            report: dict[str, Any] = {}
            watchers = [
                asyncio.create_task(run.readiness()),
                asyncio.create_task(run.invariants()),
            ]
            city = asyncio.create_task(
                simulate(
                    gateway,
                    riders=riders,
                    drivers=drivers,
                    duration=duration,
                    drain=drain,
                    cancel_rate=0.1,
                    speed=4,
                    seed=7,
                    admin_email=ADMIN_EMAIL,
                    admin_password=ADMIN_PASSWORD,
                    nats_url=nats_url,
                    report=report,
                )
            )
            await run.faults_schedule()
            code = await city
            deadline = time.monotonic() + settle
            while run.pending and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            run.done.set()
            await asyncio.gather(*watchers, return_exceptions=True)
            parked = len(report.get("parked") or [])
            replay = await replay_parked(session, gateway, nats_url, parked, replay_within)
            seen = set(run.seen_pids)
        await asyncio.sleep(1.0)
        orphans = sorted(p for p in seen if _alive(p))
    waits = [seconds for _, seconds in run.recoveries]
    calls = int(report.get("calls", 0))
    errors = sum(report.get("errors", {}).values())
    return {
        "env": env or "sqlite",
        "duration_s": duration,
        "riders": riders,
        "drivers": drivers,
        "faults": dict(run.faults),
        "faults_refused": run.fault_errors,
        "ready_again_s": {
            "max": max(waits, default=None),
            "over_limit": [f"{w}: {s}s" for w, s in run.recoveries if s > READY_WITHIN_S],
            "never": [w for _, w, _ in run.pending],
            "limit": READY_WITHIN_S,
        },
        "invariant_checks": run.checks,
        "invariant_checks_skipped": run.skipped_checks,
        "invariant_violations": sorted(set(run.violations)),
        "sim_exit": code,
        "sim_failures": report.get("failures"),
        "sim_parked": len(report.get("parked") or []),
        "replay": replay,
        "counts": report.get("counts"),
        "http_attempts": calls,
        "http_attempts_failed_then_retried": errors,
        "attempt_success_ratio": round(1 - errors / calls, 5) if calls else None,
        "orphan_processes": orphans,
    }


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def problems(result: dict[str, Any], *, timing: bool = True) -> list[str]:
    """What broke the soak's bars (empty: it held). ``timing=False``: the invariants only
    (the CI test: a loaded machine's recovery times are bench/'s business)."""
    broken = []
    if result["sim_exit"] != 0:
        broken.append(f"the simulator's invariants failed: {result['sim_failures']}")
    if result["invariant_violations"]:
        broken.append(f"invariants broken during the run: {result['invariant_violations']}")
    replay = result["replay"]
    if replay["parked"] and not replay["all_paid"]:
        broken.append(f"parked payments not all paid after the replay: {replay}")
    if result["orphan_processes"]:
        broken.append(f"processes left after down: {result['orphan_processes']}")
    ready = result["ready_again_s"]
    if timing and (ready["over_limit"] or ready["never"]):
        broken.append(f"not ready within {READY_WITHIN_S:g}s: {ready}")
    return broken


async def replay_parked(
    session: SystemSession, gateway: str, nats_url: str, parked: int, within: float
) -> dict[str, Any]:
    """Parked payments (the provider refused them to the last delivery) are replayed
    from the dead letters, as an operator would, and then every completed ride must be
    paid exactly once (``ridehail check --all-paid``, polled for ``within`` s)."""
    if not parked:
        return {"parked": 0, "replayed": False, "all_paid": True}
    manifest = str(session.manifest.path)
    command = [sys.executable, "-m", "corral", "events", "dlq", "replay", "-f", manifest]
    done = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, err = await done.communicate()
    if done.returncode != 0:
        return {"parked": parked, "replayed": False, "all_paid": False, "error": err.decode()}
    deadline = time.monotonic() + within
    code = -1
    while time.monotonic() < deadline:
        code = await check(
            gateway,
            admin_email=ADMIN_EMAIL,
            admin_password=ADMIN_PASSWORD,
            nats_url=nats_url,
            all_paid=True,
        )
        if code == 0:
            break
        await asyncio.sleep(2.0)
    return {"parked": parked, "replayed": True, "all_paid": code == 0}
