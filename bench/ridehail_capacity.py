"""Capacity of the ride flow: an open-loop load generator (arrivals per second).

    uv run python bench/ridehail_capacity.py [--rates 1,2,4,8] [--window 20] [--env postgres]

Brings its own ridehail system up with ``corral up -d`` (examples/ridehail/corral.yaml,
copied: SQLite per service, or PostgreSQL per service with ``--env postgres`` under a
system name of its own whose databases are dropped after; embedded NATS with
sync_interval always, Envoy) and offers rides at fixed arrival rates, Poisson-spaced,
each rate for ``--window`` seconds, lowest first. Riders do not wait for one ride before
the next arrives (open loop: a slow system is not spared load, as a closed loop of riders
would spare it). Times are taken from the bus, not by polling: the generator subscribes
to the system's events, so requested -> matched is from the POST to ``ride.matched`` and
requested -> paid to ``payment.captured``. Drivers are simulated apps: they go available,
get their assignment from ``ride.matched``, read the ride, then arrive, start, post 4
positions and complete through the gateway (0.1 s apart), and go available again; while
they wait they say so every 5 s.

A rate passes when, over its window, requested -> matched p99 <= 500 ms, requested ->
paid p99 <= 2 s, and there is no error (an HTTP error, a ride unmatched, not paid by the
end of the drain, or a rider pool too small). Capacity is the highest passing rate.
Per-service CPU per ride comes from the CPU time of every instance's process tree over
the window, less what the same service burns idle (measured first, ``--idle`` seconds
with the drivers on duty and no ride); the orchestrator's own process (probes, scrapes,
telemetry intake) and this generator are reported apart. Each step also records the
requests per ride, publish -> bus latency by topic, the busiest instance, the machine's
busy share and its load average (the machine is shared), and the result names the
bottleneck at the first failing rate. Writes bench/results/ridehail_capacity.json
(ridehail_capacity_postgres.json with ``--env postgres``).

Side by side with an older commit, in one run (the machine is shared, so only runs
taken together compare)::

    uv run python bench/ridehail_capacity.py --base 1e6c377 --pairs 2 --rates 4 --window 30

exports the commit, and this checkout's HEAD (committed work only: edits made while
it runs are not measured), each to a directory of its own with its own environment
(``uv sync``), puts this generator in both (the same load and measurement on both
sides), and runs the two alternately, base first, ``--pairs`` times; writes
bench/results/ridehail_capacity_branch_vs_base.json: per pair and rate, CPU per ride by
service on each side and the ratios branch / base, with each run's machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import nats
import psutil
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "examples" / "ridehail"))
from _common import percentile, write_result  # noqa: E402
from ridehail_sim import cpu_of, process_tree  # noqa: E402
from ridehail_system import copy_example, wait_for_jwks  # noqa: E402

from corral.broker import control_url  # noqa: E402
from corral.manifest import load  # noqa: E402
from corral.plan import resolve  # noqa: E402
from corral.runtime.databases import database_name  # noqa: E402

PASSWORD = "correct horse battery staple"
CITY = (52.45, 13.30, 52.57, 13.50)
MATCHED_P99_S = 0.5
PAID_P99_S = 2.0
HEARTBEAT_S = 5.0
CONTROL_PLANE = "corral (control plane)"
"""The orchestrator's own process: probes, scrapes, telemetry intake (reported apart)."""
SET_OFF_S = 0.1


CALLS: Counter[str] = Counter()
"""Requests the generator sent, by method and route kind (ids replaced by {id})."""


def _kind(path: str) -> str:
    parts = path.split("/")
    return "/".join("{id}" if len(p) >= 32 else p for p in parts)


def somewhere(rng: random.Random) -> dict[str, float]:
    return {"lat": rng.uniform(CITY[0], CITY[2]), "lng": rng.uniform(CITY[1], CITY[3])}


@dataclass
class Ride:
    rider: Person
    requested: float
    matched: float | None = None
    paid: float | None = None
    ended: str | None = None  # paid, payment failed, unmatched, cancelled
    seen: dict[str, float] = field(default_factory=dict)
    """When each of the ride's events first reached the bus (by topic)."""


@dataclass
class Person:
    http: aiohttp.ClientSession
    role: str
    id: str = ""
    token: str = ""
    assignments: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    async def call(
        self, method: str, path: str, errors: Counter[str], *, quiet: int = 0, **kw: Any
    ) -> Any:
        """The JSON answer, or None after counting an error (never raises on HTTP);
        ``quiet``: a status that is an answer, not an error (None, not counted)."""
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        CALLS[f"{method} {_kind(path)}"] += 1
        try:
            async with self.http.request(method, path, headers=headers, **kw) as response:
                if response.status == quiet:
                    return None
                if response.status >= 400:
                    errors[f"{method} {path.split('/')[1]} {response.status}"] += 1
                    return None
                return await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors[f"{method} {path.split('/')[1]} {type(exc).__name__}"] += 1
            return None

    async def enrol(self, errors: Counter[str]) -> None:
        email = f"{self.role}-{uuid.uuid4().hex[:10]}@cap.ridehail.local"
        body = {"email": email, "password": PASSWORD, "name": self.role, "role": self.role}
        made = await self.call("POST", "/auth/signup", errors, json=body)
        login = await self.call(
            "POST", "/auth/login", errors, json={"email": email, "password": PASSWORD}
        )
        if made is None or login is None:
            raise RuntimeError(f"cannot enrol a {self.role}: {dict(errors)}")
        self.id, self.token = made["id"], login["access_token"]


class Generator:
    def __init__(self, http: aiohttp.ClientSession, seed: int, system: str) -> None:
        self.http = http
        self.system = system
        self.rng = random.Random(seed)
        self.errors: Counter[str] = Counter()
        self.rides: dict[str, Ride] = {}
        self.drivers: dict[str, Person] = {}
        self.free_riders: deque[Person] = deque()
        self.stop = asyncio.Event()
        self.bus_lag: dict[str, list[float]] = {}
        """Seconds from publish() to the bus, by topic (the same clock: one machine)."""

    # -- the bus: when things happened ---------------------------------------------------
    async def on_event(self, msg: Any) -> None:
        topic = msg.subject.removeprefix(f"{self.system}.")
        if topic.startswith("_"):
            return
        wall = time.time()
        try:
            envelope = json.loads(msg.data)
            data = envelope["data"]
        except (ValueError, KeyError, TypeError):
            return
        ride = self.rides.get(data.get("ride_id", ""))
        now = time.monotonic()
        if ride is None or ride.ended:
            return
        with contextlib.suppress(KeyError, TypeError, ValueError):
            # From publish() (in the producer's transaction, for an outbox event) to the
            # bus: the commit, the relay's round and the broker's acknowledgement.
            published = datetime.fromisoformat(envelope["time"]).timestamp()
            self.bus_lag.setdefault(topic.split(".", 2)[0] + "." + topic.split(".")[1], []).append(
                wall - published
            )
        ride.seen.setdefault(topic.split(".")[0] + "." + topic.split(".")[1], now)
        if topic.startswith("ride.matched"):
            if ride.matched is None:
                ride.matched = now
            driver = self.drivers.get(data.get("driver_id", ""))
            if driver is not None:
                driver.assignments.put_nowait(data["ride_id"])
        elif topic.startswith("payment.captured"):
            ride.paid = now
            self.end(ride, "paid")
        elif topic.startswith("payment.failed"):
            self.end(ride, "payment failed")
        elif topic.startswith("ride.unmatched"):
            self.end(ride, "unmatched")

    def end(self, ride: Ride, how: str) -> None:
        ride.ended = how
        self.free_riders.append(ride.rider)

    # -- drivers ---------------------------------------------------------------------------
    async def driver(self, person: Person) -> None:
        where = somewhere(self.rng)
        # The ride this driver last drove: matching answers it as "your ride" until it
        # has handled its ride.completed; serving it again would spin (a PUT and a GET
        # per turn), so the driver waits for its next assignment instead, as an app does.
        done: str | None = None
        while not self.stop.is_set():
            answer = await person.call(
                "PUT",
                "/drivers/me/availability",
                self.errors,
                json={"available": True, "position": where},
            )
            ride_id = (answer or {}).get("ride_id")
            if ride_id is None or ride_id == done:
                ride_id = None
                with contextlib.suppress(TimeoutError):
                    ride_id = await asyncio.wait_for(person.assignments.get(), HEARTBEAT_S)
            if not ride_id or ride_id == done:  # a heartbeat is due ("" when told to stop)
                continue
            where = await self.serve(person, ride_id) or where
            done = ride_id

    async def serve(self, driver: Person, ride_id: str) -> dict[str, float] | None:
        # The driver heard of the match from the bus, as rides did; it sets off after
        # SET_OFF_S and reads the ride first. rides may not have applied the match yet
        # (404, or still "requested"): it looks again every SET_OFF_S, as an app would.
        ride = None
        for _ in range(100):
            await asyncio.sleep(SET_OFF_S)
            ride = await driver.call("GET", f"/rides/{ride_id}", self.errors, quiet=404)
            if ride is not None and ride["status"] != "requested":
                break
        if ride is None or ride.get("driver_id") != driver.id or ride["status"] != "matched":
            return None
        for step in ("arrive", "start"):
            if await driver.call("POST", f"/rides/{ride_id}/{step}", self.errors) is None:
                return None
        pickup, dropoff = ride["pickup"], ride["dropoff"]
        for i in range(1, 5):
            point = {k: pickup[k] + (dropoff[k] - pickup[k]) * i / 4 for k in ("lat", "lng")}
            await driver.call("POST", "/tracking/positions", self.errors, json={"position": point})
            await asyncio.sleep(0.1)
        done = await driver.call("POST", f"/rides/{ride_id}/complete", self.errors)
        return dict(dropoff) if done is not None else None

    # -- riders: open loop -------------------------------------------------------------------
    async def request(self, rider: Person, window: list[Ride]) -> None:
        began = time.monotonic()
        body = {"pickup": somewhere(self.rng), "dropoff": somewhere(self.rng)}
        answer = await rider.call("POST", "/rides", self.errors, json=body)
        if answer is None:
            self.free_riders.append(rider)
            return
        ride = Ride(rider, began)
        self.rides[answer["id"]] = ride
        window.append(ride)

    async def offer(self, rate: float, seconds: float) -> tuple[list[Ride], int]:
        """Arrivals at ``rate`` per second for ``seconds``; the rides, and arrivals that
        found no free rider (the pool is too small: counted as errors)."""
        window: list[Ride] = []
        tasks: set[asyncio.Task[None]] = set()
        short = 0
        began = time.monotonic()
        at = began
        while True:
            at += self.rng.expovariate(rate)
            if at - began >= seconds:
                break
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            if not self.free_riders:
                short += 1
                continue
            task = asyncio.create_task(self.request(self.free_riders.popleft(), window))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
        return window, short


@dataclass
class System:
    """A ridehail system run by ``corral up -d``: its orchestrator is a process of its
    own, so its CPU (probes, scrapes, telemetry intake) is measured apart from the
    services' and the generator's, as it runs for users."""

    manifest: Path
    system: str
    gateway: str
    nats_url: str
    orchestrator_pid: int
    instances: list[dict[str, Any]]


def corral(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "corral", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"corral {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


@contextlib.asynccontextmanager
async def detached_system(tmp: Path, env: str | None) -> AsyncIterator[System]:
    """examples/ridehail copied into ``tmp`` and brought up in the background; with
    ``env`` (postgres) under a name of its own, whose databases are dropped after."""
    name = f"rhcap{uuid.uuid4().hex[:8]}" if env else "ridehail"
    manifest = copy_example(tmp, lambda text: text.replace("name: ridehail\n", f"name: {name}\n"))
    env_args = ("--env", env) if env else ()
    plan = resolve(load(manifest, environment=env), python=sys.executable)
    try:
        await asyncio.to_thread(corral, "up", "-d", str(manifest), *env_args)
        try:
            status = json.loads(await asyncio.to_thread(corral, "status", "--json", str(manifest)))
            nats_url = control_url(plan.state_dir)
            assert nats_url, "the system runs no event bus"
            await wait_for_jwks(status["gateway_url"])
            yield System(
                manifest,
                plan.system,
                status["gateway_url"],
                nats_url,
                status["pid"],
                [i for i in status["instances"] if i.get("pid")],
            )
        finally:
            await asyncio.to_thread(corral, "down", str(manifest))
    finally:
        if env == "postgres":
            await drop_databases(plan.system, list(plan.services))


async def drop_databases(system: str, services: list[str]) -> None:
    """The PostgreSQL databases and roles ``corral up --env postgres`` made for the run."""
    import asyncpg  # only for --env postgres

    url = os.environ.get("CORRAL_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    conn = await asyncpg.connect(url)
    try:
        for service in services:
            db = database_name(system, service)
            for sql in (
                f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)',
                f'DROP ROLE IF EXISTS "{db}"',
            ):
                with contextlib.suppress(asyncpg.PostgresError):
                    await conn.execute(sql)
    finally:
        await conn.close()


def cpu_by_instance(instances: list[dict[str, Any]]) -> dict[str, float]:
    """CPU seconds of each instance's process tree so far."""
    return {i["instance"]: cpu_of(process_tree(i["pid"])) for i in instances if i.get("pid")}


def cpu_by_service(
    instances: list[dict[str, Any]], by_instance: dict[str, float]
) -> dict[str, float]:
    totals: dict[str, float] = {}
    for instance in instances:
        if instance["instance"] in by_instance:
            service = instance["service"]
            totals[service] = totals.get(service, 0.0) + by_instance[instance["instance"]]
    return totals


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (everyone's processes)."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    total = sum(times)
    return total - idle, total


def bottleneck(step: dict[str, Any]) -> str:
    """What stopped the rate, read from its step: the machine's cores, one instance's
    event loop (one core at most), or neither (then waiting, not CPU)."""
    top = max(step["cpu_ms_per_ride"], key=lambda s: step["cpu_ms_per_ride"][s])
    busiest = step["busiest_instance"]
    if step["machine_cpu_busy"] >= 0.9:
        return (
            f"CPU: the machine's cores were {step['machine_cpu_busy']:.0%} busy (every "
            f"process on it); most CPU per ride: {top} "
            f"({step['cpu_ms_per_ride'][top]} ms of {step['cpu_ms_per_ride_system']})"
        )
    if busiest["cores"] >= 0.85:
        return f"one event loop: {busiest['instance']} used {busiest['cores']} of a core"
    return (
        f"no core saturated (machine {step['machine_cpu_busy']:.0%} busy, busiest instance "
        f"{busiest['instance']} at {busiest['cores']} cores): waiting, see hops_p50_ms"
    )


def judge(rate: float, window: list[Ride], short: int, errors: Counter[str]) -> dict[str, Any]:
    matched = [r.matched - r.requested for r in window if r.matched is not None]
    paid = [r.paid - r.requested for r in window if r.paid is not None]
    ended = Counter(r.ended or "not paid by the end of the drain" for r in window)
    failures = {k: v for k, v in ended.items() if k != "paid"}
    if short:
        failures["no free rider (pool too small)"] = short
    failures.update(errors)
    m99 = percentile(matched, 0.99) if matched else None
    p99 = percentile(paid, 0.99) if paid else None
    passed = (
        bool(window)
        and not failures
        and m99 is not None
        and m99 <= MATCHED_P99_S
        and p99 is not None
        and p99 <= PAID_P99_S
    )
    hops: dict[str, list[float]] = {}
    for ride in window:
        marks = sorted([("POST /rides", ride.requested), *ride.seen.items()], key=lambda m: m[1])
        for (a, ta), (b, tb) in itertools.pairwise(marks):
            hops.setdefault(f"{a} -> {b}", []).append(tb - ta)
    return {
        "rate_per_s": rate,
        "rides": len(window),
        "hops_p50_ms": {
            k: round(percentile(v, 0.5) * 1000, 1) for k, v in hops.items() if len(v) >= 3
        },
        "paid": ended.get("paid", 0),
        "requested_to_matched_ms": {
            "p50": round(percentile(matched, 0.5) * 1000, 1) if matched else None,
            "p99": round(m99 * 1000, 1) if m99 is not None else None,
        },
        "requested_to_paid_ms": {
            "p50": round(percentile(paid, 0.5) * 1000, 1) if paid else None,
            "p99": round(p99 * 1000, 1) if p99 is not None else None,
        },
        "errors": failures,
        "passed": passed,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rates = [float(r) for r in args.rates.split(",")]
    top = max(rates)
    riders = args.riders or int(top * 6) + 10
    drivers = args.drivers or int(top * 3) + 10
    steps: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ridehail-capacity-") as tmp:
        async with detached_system(Path(tmp), args.env) as system:
            instances = system.instances
            orchestrator = [psutil.Process(system.orchestrator_pid)]
            pids = {i["instance"]: i["pid"] for i in instances}
            pids["orchestrator"] = system.orchestrator_pid
            print(json.dumps({"instances": pids}), file=sys.stderr, flush=True)
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=15)
            async with aiohttp.ClientSession(
                system.gateway, connector=connector, timeout=timeout
            ) as http:
                gen = Generator(http, args.seed, system.system)
                people = [Person(http, "rider") for _ in range(riders)]
                people += [Person(http, "driver") for _ in range(drivers)]
                gate = asyncio.Semaphore(8)

                async def enrol(person: Person) -> None:
                    async with gate:
                        await person.enrol(gen.errors)

                await asyncio.gather(*(enrol(p) for p in people))
                gen.free_riders.extend(p for p in people if p.role == "rider")
                gen.drivers = {p.id: p for p in people if p.role == "driver"}
                bus = await nats.connect(system.nats_url)
                await bus.subscribe(f"{system.system}.>", cb=gen.on_event)
                fleet = [asyncio.create_task(gen.driver(p)) for p in gen.drivers.values()]
                await asyncio.sleep(1.0)  # drivers on duty
                me = psutil.Process()

                def sample() -> tuple[dict[str, float], dict[str, float], float, float]:
                    """CPU so far: by instance, by service (the orchestrator as
                    CONTROL_PLANE), the generator's, and the time of the sample."""
                    by_instance = cpu_by_instance(instances)
                    by_service = cpu_by_service(instances, by_instance)
                    by_service[CONTROL_PLANE] = cpu_of(orchestrator)
                    return by_instance, by_service, cpu_of([me]), time.monotonic()

                # What the system costs with drivers on duty and no ride: its periodic
                # work (sweeps, probes, scrapes, heartbeats), taken off each rate's CPU.
                _, cpu0, _, idle_began = sample()
                await asyncio.sleep(args.idle)
                _, cpu1, _, idle_ended = sample()
                idle = {s: (c - cpu0[s]) / (idle_ended - idle_began) for s, c in cpu1.items()}
                try:
                    for rate in rates:
                        gen.errors.clear()
                        gen.bus_lag.clear()
                        CALLS.clear()
                        load_before = os.getloadavg()
                        inst0, cpu0, mine0, step_began = sample()
                        busy0 = machine_busy()
                        window, short = await gen.offer(rate, args.window)
                        drain_until = time.monotonic() + args.drain
                        while time.monotonic() < drain_until and any(
                            r.ended is None for r in window
                        ):
                            await asyncio.sleep(0.1)
                        inst1, cpu1, mine1, step_ended = sample()
                        busy1 = machine_busy()
                        step = judge(rate, window, short, gen.errors)
                        rides = max(1, len(window))
                        spent = step_ended - step_began
                        per_ride = {
                            s: round((cpu1[s] - cpu0[s] - idle[s] * spent) / rides * 1000, 2)
                            for s in sorted(cpu1)
                        }
                        step["control_plane_cpu_ms_per_ride"] = per_ride.pop(CONTROL_PLANE)
                        step["cpu_ms_per_ride"] = per_ride
                        step["cpu_ms_per_ride_system"] = round(sum(per_ride.values()), 2)
                        cores = {i: (inst1[i] - inst0.get(i, 0.0)) / spent for i in inst1}
                        top = max(cores, key=lambda i: cores[i])
                        step["busiest_instance"] = {"instance": top, "cores": round(cores[top], 3)}
                        step["machine_cpu_busy"] = round(
                            (busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1]), 3
                        )
                        step["publish_to_bus_ms"] = {
                            topic: {
                                "p50": round(percentile(lags, 0.5) * 1000, 1),
                                "p99": round(percentile(lags, 0.99) * 1000, 1),
                            }
                            for topic, lags in sorted(gen.bus_lag.items())
                            if len(lags) >= 3
                        }
                        step["requests_per_ride"] = {
                            k: round(v / rides, 2) for k, v in sorted(CALLS.items())
                        }
                        step["generator_cpu_ms_per_ride"] = round((mine1 - mine0) / rides * 1000, 2)
                        step["loadavg"] = [round(x, 2) for x in load_before]
                        steps.append(step)
                        print(json.dumps(step), flush=True)
                        for ride in window:  # left unfinished: free the rider anyway
                            if ride.ended is None:
                                gen.end(ride, "not paid by the end of the drain")
                        if not step["passed"] and not args.keep_going:
                            break
                finally:
                    gen.stop.set()
                    for driver in gen.drivers.values():
                        driver.assignments.put_nowait("")
                    await asyncio.wait(fleet, timeout=10)
                    await bus.close()
    passing = [s["rate_per_s"] for s in steps if s["passed"]]
    capacity = max(passing) if passing else 0.0
    first_failing = next((s for s in steps if not s["passed"]), None)
    busiest = None
    if steps:
        last = (first_failing or steps[-1])["cpu_ms_per_ride"]
        busiest = max(last, key=lambda s: last[s]) if last else None
    database = "PostgreSQL per service (--env postgres)" if args.env else "SQLite per service"
    return {
        "benchmark": "ridehail_capacity",
        "command": " ".join(["uv run python bench/ridehail_capacity.py", *sys.argv[1:]]),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
        "system": (
            f"examples/ridehail/corral.yaml{' + corral.' + args.env + '.yaml' if args.env else ''}"
            f" under corral up -d: {database}, NATS sync_interval always"
        ),
        "env": args.env,
        "slo": {
            "requested_to_matched_p99_ms": MATCHED_P99_S * 1000,
            "requested_to_paid_p99_ms": PAID_P99_S * 1000,
            "errors": 0,
            "window_s": args.window,
            "window_note": "60 s asked; shorter on this shared machine (load recorded per step)",
        },
        "riders": riders,
        "drivers": drivers,
        "idle_cpu_cores_by_service": {s: round(v, 3) for s, v in idle.items()},
        "idle_cpu_cores_system": round(sum(v for s, v in idle.items() if s != CONTROL_PLANE), 3),
        "steps": steps,
        "capacity_rides_per_s": capacity,
        "goal_rides_per_s": 100,
        "most_cpu_per_ride_at_first_failing_rate": busiest,
        "bottleneck": bottleneck(first_failing) if first_failing else None,
    }


SAME_GENERATOR = ("bench/ridehail_capacity.py", "bench/ridehail_sim.py", "bench/_common.py")


def base_checkout(commit: str) -> Path:
    """``commit`` exported to a directory with its own environment, and this generator
    in it; kept between runs (made again only if missing)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", commit],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    where = Path(tempfile.gettempdir()) / f"corral-ridehail-{sha}"
    if not (where / ".venv").exists():
        where.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
        subprocess.run(
            ["uv", "sync", "--locked", "--compile-bytecode", "-q"], cwd=where, check=True
        )
    for name in SAME_GENERATOR:
        (where / name).write_bytes((ROOT / name).read_bytes())
    return where


def side_by_side(args: argparse.Namespace, passed: list[str]) -> dict[str, Any]:
    """Base and branch alternately (see the module docstring)."""
    checkouts = {"base": base_checkout(args.base), "branch": base_checkout("HEAD")}
    sides = {
        side: [str(where / ".venv/bin/python"), str(where / "bench/ridehail_capacity.py")]
        for side, where in checkouts.items()
    }
    pairs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ridehail-vs-") as tmp:
        for pair in range(args.pairs):
            runs: dict[str, Any] = {}
            for side, command in sides.items():
                out = Path(tmp) / f"{side}-{pair}.json"
                subprocess.run([*command, *passed, "--out", str(out)], check=True)
                runs[side] = json.loads(out.read_text())
            pairs.append(compare(runs["base"], runs["branch"]))
            print(json.dumps(pairs[-1], indent=2), flush=True)
    return {
        "benchmark": "ridehail_capacity_branch_vs_base",
        "command": " ".join(["uv run python bench/ridehail_capacity.py", *sys.argv[1:]]),
        "base": subprocess.run(
            ["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "branch": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "note": (
            "Services' CPU per ride (idle subtracted), the orchestrator and the generator"
            " apart; base and branch run alternately with the same generator. Shared"
            " 2-core machine: compare within a pair (load per run recorded)."
        ),
        "pairs": pairs,
    }


def compare(base: dict[str, Any], branch: dict[str, Any]) -> dict[str, Any]:
    """One pair: per rate, each side's figures and branch / base."""

    def ratio(new: float, old: float) -> float | None:
        return round(new / old, 3) if old > 0 else None

    steps = []
    for old, new in zip(base["steps"], branch["steps"], strict=True):
        services = sorted(set(old["cpu_ms_per_ride"]) | set(new["cpu_ms_per_ride"]))
        steps.append(
            {
                "rate_per_s": old["rate_per_s"],
                "loadavg": {"base": old["loadavg"], "branch": new["loadavg"]},
                "passed": {"base": old["passed"], "branch": new["passed"]},
                "errors": {"base": old["errors"], "branch": new["errors"]},
                "requested_to_matched_p99_ms": {
                    "base": old["requested_to_matched_ms"]["p99"],
                    "branch": new["requested_to_matched_ms"]["p99"],
                },
                "requested_to_paid_p99_ms": {
                    "base": old["requested_to_paid_ms"]["p99"],
                    "branch": new["requested_to_paid_ms"]["p99"],
                },
                "cpu_ms_per_ride_services": {
                    "base": old["cpu_ms_per_ride_system"],
                    "branch": new["cpu_ms_per_ride_system"],
                    "ratio": ratio(new["cpu_ms_per_ride_system"], old["cpu_ms_per_ride_system"]),
                },
                "cpu_ms_per_ride_by_service": {
                    s: {
                        "base": old["cpu_ms_per_ride"].get(s),
                        "branch": new["cpu_ms_per_ride"].get(s),
                        "ratio": ratio(
                            new["cpu_ms_per_ride"].get(s, 0.0), old["cpu_ms_per_ride"].get(s, 0.0)
                        ),
                    }
                    for s in services
                },
                "control_plane_cpu_ms_per_ride": {
                    "base": old["control_plane_cpu_ms_per_ride"],
                    "branch": new["control_plane_cpu_ms_per_ride"],
                },
            }
        )
    return {
        "capacity_rides_per_s": {
            "base": base["capacity_rides_per_s"],
            "branch": branch["capacity_rides_per_s"],
        },
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="2,4,8,16,32")
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--drain", type=float, default=10.0)
    parser.add_argument("--riders", type=int, default=0)
    parser.add_argument("--drivers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle baseline")
    parser.add_argument("--keep-going", action="store_true", help="run every rate")
    parser.add_argument(
        "--env", choices=["postgres"], help="merge corral.<env>.yaml (PostgreSQL per service)"
    )
    parser.add_argument("--out", type=Path, help="write the result here instead")
    parser.add_argument("--base", help="a commit to compare with, side by side")
    parser.add_argument("--pairs", type=int, default=2, help="base/branch pairs (--base)")
    args = parser.parse_args()
    if args.base:
        passed = [
            *("--rates", args.rates, "--window", str(args.window), "--drain", str(args.drain)),
            *("--riders", str(args.riders), "--drivers", str(args.drivers)),
            *("--seed", str(args.seed), "--idle", str(args.idle)),
            *(["--keep-going"] if args.keep_going else []),
            *(["--env", args.env] if args.env else []),
        ]
        together = side_by_side(args, passed)
        write_result("ridehail_capacity_branch_vs_base.json", together)
        return
    # uvloop, as the services run: the generator shares the two cores with the system,
    # so its own CPU per request matters (reported apart as generator_cpu_ms_per_ride).
    result = asyncio.run(run(args), loop_factory=uvloop.new_event_loop)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    else:
        write_result(f"ridehail_capacity{'_' + args.env if args.env else ''}.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "steps"}, indent=2))
    if result["capacity_rides_per_s"] < result["goal_rides_per_s"]:
        print(f"GOAL MISSED: capacity {result['capacity_rides_per_s']} rides/s < 100")


if __name__ == "__main__":
    main()
