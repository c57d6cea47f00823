"""Instructions per ServiceClient call, counted by valgrind (callgrind): a figure that
does not move with the neighbours' load, unlike client_overhead.py's timings.

The client calls a raw ASGI upstream (as client_overhead.py's) from one process inside a
handler's context (a current span and request id: all four context headers go out),
``--calls`` times after a warm-up; the process runs twice, with 100 and with 100 +
``--calls`` calls, under callgrind, and the difference divided by ``--calls`` is the
cost of one call (Python start-up and imports cancel out; the hash seed is fixed so both
runs take the same paths). ``--against REF`` counts the code of a git revision the same
way, side by side (its ``src/`` taken with ``git archive``). Several minutes: valgrind
runs Python about 50 times slower. Results: bench/results/client_instructions.json.

    uv run python bench/client_instructions.py [--calls 2000] [--against main]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from _common import free_port, write_result
from http_clients import wait_for_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WARM = 100


async def calls(url: str, count: int) -> None:
    """Child process: ``count`` calls as inside a handler (context headers included)."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, use_span

    from corral.sdk._context import request_id_var
    from corral.sdk.client import (
        BulkheadPolicy,
        ClientTelemetry,
        Policy,
        ServiceClient,
        StaticResolver,
    )

    client = ServiceClient(
        "pricing",
        resolver=StaticResolver({"pricing": url}),
        policy=Policy(bulkhead=BulkheadPolicy(max_concurrent=256, max_queue=0)),
        telemetry=ClientTelemetry(),
        caller="bench",
    )
    span = NonRecordingSpan(
        SpanContext(
            trace_id=0x0AF7651916CD43DD8448EB211C80319C,
            span_id=0xB7AD6B7169203331,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    )
    request_id_var.set("0f9c2b7e4d1a4c3e8b5a6d7c8e9f0a1b")
    with use_span(span):
        for _ in range(count):
            await client.get("/estimate")
    await client.aclose()


def instructions(src: Path | None, port: int, count: int) -> int:
    """Instructions of one whole child run (``src``: another tree's ``src/`` first)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(Path(__file__).resolve()),
            "calls",
            str(port),
            str(count),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    found = re.search(r"Collected\s*:\s*(\d+)", out)
    assert found, out[-2000:]
    return int(found.group(1))


def per_call(src: Path | None, port: int, count: int) -> int:
    runs = [instructions(src, port, n) for n in (WARM, WARM + count)]
    return round((runs[1] - runs[0]) / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--against", help="a git revision to count side by side")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(HERE)!r}); "
            f"import http_clients; http_clients.serve_upstream({port})",
        ]
    )
    try:
        wait_for_port(port)
        result: dict[str, object] = {"this tree": per_call(None, port, args.calls)}
        if args.against:
            with tempfile.TemporaryDirectory(prefix="corral-bench-ref-") as tmp:
                archive = subprocess.run(
                    ["git", "archive", args.against, "src"],
                    cwd=ROOT,
                    capture_output=True,
                    check=True,
                ).stdout
                archive_path = Path(tmp) / "src.tar"
                archive_path.write_bytes(archive)
                with tarfile.open(archive_path) as tar:
                    tar.extractall(tmp, filter="data")
                result[args.against] = per_call(Path(tmp) / "src", port, args.calls)
    finally:
        server.terminate()
        server.wait(10)
    out = {
        "benchmark": "client_instructions",
        "what": "instructions per ServiceClient.get inside a handler's context (callgrind)",
        "calls": args.calls,
        "instructions_per_call": result,
    }
    if args.against:
        mine, theirs = result["this tree"], result[args.against]
        assert isinstance(mine, int)
        assert isinstance(theirs, int)
        out["change_pct"] = round((mine - theirs) / theirs * 100, 2)
    write_result("client_instructions.json", out)
    print(out)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "calls":
        import uvloop

        uvloop.run(calls(f"http://127.0.0.1:{sys.argv[2]}", int(sys.argv[3])))
    else:
        main()
