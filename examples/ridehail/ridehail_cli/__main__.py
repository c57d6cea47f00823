"""The ridehail command: `ridehail demo` (a scripted tour), `ridehail sim` (a city) and
`ridehail check` (the invariants over what the system holds)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ridehail_cli.api import ADMIN_EMAIL, ADMIN_PASSWORD, find_gateway


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ridehail", description=__doc__)
    parser.add_argument(
        "--gateway", help="gateway base URL (default: RIDEHAIL_URL or corral status)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="a scripted tour: one ride from sign-up to payment")
    sim = commands.add_parser("sim", help="a city of riders and drivers, then invariant checks")
    sim.add_argument("--riders", type=int, default=10)
    sim.add_argument("--drivers", type=int, default=5)
    sim.add_argument("--duration", type=float, default=30.0, help="seconds of new ride requests")
    sim.add_argument("--drain", type=float, default=30.0, help="seconds for rides in flight to end")
    sim.add_argument("--cancel-rate", type=float, default=0.1)
    sim.add_argument("--speed", type=float, default=1.0, help="driver speed-up factor")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--admin-email", default=ADMIN_EMAIL)
    sim.add_argument("--admin-password", default=ADMIN_PASSWORD)
    sim.add_argument("--nats-url", help="to check dead letters (default: from corral status)")
    check = commands.add_parser("check", help="the invariants over every ride, simulating nothing")
    check.add_argument("--all-paid", action="store_true", help="parked payments fail it too")
    check.add_argument("--expect-parked", action="store_true", help="none parked fails it")
    check.add_argument("--admin-email", default=ADMIN_EMAIL)
    check.add_argument("--admin-password", default=ADMIN_PASSWORD)
    check.add_argument("--nats-url", help="to check dead letters (default: from corral status)")
    args = parser.parse_args(argv)
    gateway = find_gateway(args.gateway)
    if args.command == "demo":
        from ridehail_cli.demo import tour

        return asyncio.run(tour(gateway))
    if args.command == "check":
        from ridehail_cli.api import bus_url
        from ridehail_cli.check import check as run_check

        return asyncio.run(
            run_check(
                gateway,
                admin_email=args.admin_email,
                admin_password=args.admin_password,
                nats_url=args.nats_url or bus_url(),
                all_paid=args.all_paid,
                expect_parked=args.expect_parked,
            )
        )
    from ridehail_cli.sim import simulate

    if args.riders < 1 or args.drivers < 1 or args.duration <= 0:
        parser.error("--riders and --drivers must be >= 1 and --duration > 0")
    try:
        return _run(args, simulate, gateway)
    except KeyboardInterrupt:
        print("ridehail sim: interrupted (simulated drivers asked to go offline)", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, simulate: Any, gateway: str) -> int:
    code: int = asyncio.run(
        simulate(
            gateway,
            riders=args.riders,
            drivers=args.drivers,
            duration=args.duration,
            drain=args.drain,
            cancel_rate=args.cancel_rate,
            speed=args.speed,
            seed=args.seed,
            admin_email=args.admin_email,
            admin_password=args.admin_password,
            nats_url=args.nats_url,
        )
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
