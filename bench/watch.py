"""``corral up --watch``: from a save of examples/hello's greeter to the new code
answering through the gateway, with a request loop running. Not a test: timing lives
here (tests/watch/test_watch_live.py proves the behaviour).

Per edit, from the moment the file is written:
- ``first_new``: the first answer through the gateway that carries the new code;
- ``reloaded``: the watcher's reload done (every old instance drained and stopped),
  after which every answer is the new code's; timed by the watcher from the moment it
  saw the change (so without watchfiles' own detection delay).
Every request of the loop (4 concurrent clients) counts: a non-200 or a transport error
is a failed request. The machine is shared: the load average is recorded alongside.

Run twice in one go: with the fork server (the default: new instances fork from a warm
interpreter, corral.runtime._forkserver; the top-level keys) and without
(``CORRAL_FORK_SERVER=0``; under ``without_fork_server``).

Run: ``uv run python bench/watch.py [--edits N]``; writes bench/results/watch.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import git_commit, percentile, write_result
from startup import fork_server as fork_server_switch

from corral.api import ApiClient
from corral.control import SystemSession, addons_for
from corral.manifest import load
from corral.plan import resolve
from corral.runtime.drivers import FORK_SERVER_VARIABLE
from corral.watch import ApiTarget, Reloaded, ReloadFailed, SourceMap, Watcher, WatchEvent

HELLO = Path(__file__).resolve().parents[1] / "examples" / "hello"
CLIENTS = 4


class Loop:
    """``CLIENTS`` looping clients, each with its own connection pool (as separate users
    would be): one pool shared by concurrent tasks hits httpcore 1.0.9's race where a
    pass of the pool closes an idle connection that another pass just gave to a request
    (encode/httpcore#1110). That was the one failed request of the first recorded run:
    Envoy logged it with flags ``DC`` (downstream_remote_disconnect, after 0 ms), and the
    client's error was ``ReadError`` from anyio's ``ClosedResourceError`` (its own side
    closed the socket), so neither Envoy nor the services failed it."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.requests = 0
        self.failures: list[str] = []
        self.seen: dict[str, float] = {}
        """Each message, when it was first answered."""

    async def client(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as gateway:
            while True:
                try:
                    response = await gateway.get("/hello/bench")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                self.requests += 1
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:120]}")
                    continue
                self.seen.setdefault(response.json()["message"], time.perf_counter())


async def main(edits: int) -> dict[str, Any]:
    result: dict[str, Any] = {"commit": git_commit()}
    result |= await measure(edits, fork_server=True)
    without = await measure(edits, fork_server=False)
    result["without_fork_server"] = without
    result["ratio_new_code_median_fork_server_vs_spawn"] = round(
        result["save_to_new_code_s"]["median"] / without["save_to_new_code_s"]["median"], 3
    )
    return result


async def measure(edits: int, *, fork_server: bool) -> dict[str, Any]:
    with fork_server_switch(fork_server):
        return await _measure(edits)


async def _measure(edits: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "hello"
        shutil.copytree(HELLO, root, ignore=shutil.ignore_patterns(".corral", "__pycache__"))
        app = root / "greeter" / "app.py"
        original = app.read_text()
        manifest = load(root)
        plan = resolve(manifest, python=sys.executable)
        session = SystemSession(manifest, plan, addons=addons_for(plan))
        run = asyncio.create_task(session.run())
        await asyncio.wait_for(session.ready.wait(), 180)
        events: list[WatchEvent] = []
        stop = asyncio.Event()
        api = ApiClient(session.api_url, session.admin_token)
        watcher = Watcher(SourceMap(plan, [manifest.path]), ApiTarget(api), events.append)
        tasks: list[asyncio.Task[None]] = []
        first_new: list[float] = []
        reloaded: list[float] = []
        load_before = os.getloadavg()
        try:
            loop = Loop(str(session.status().gateway_url))
            tasks = [asyncio.create_task(watcher.run(stop))]
            tasks += [asyncio.create_task(loop.client()) for _ in range(CLIENTS)]
            await asyncio.sleep(1.0)  # the watcher is up, the loop is warm
            for i in range(edits):
                message = f"edit {i}, bench"
                done_before = len(events)
                app.write_text(original.replace('f"hello, {name}"', f'"{message}"'))
                saved = time.perf_counter()
                async with asyncio.timeout(120):
                    while (finished := _outcome(events[done_before:])) is None:
                        await asyncio.sleep(0.005)
                    while message not in loop.seen and isinstance(finished, Reloaded):
                        await asyncio.sleep(0.005)
                reloaded.append(finished.seconds)
                if isinstance(finished, ReloadFailed):
                    raise RuntimeError(f"reload failed: {finished}")
                first_new.append(loop.seen[message] - saved)
                print(f"edit {i}: new code at {first_new[-1]:.3f}s, reload {reloaded[-1]:.3f}s")
        finally:
            stop.set()
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            api.close()
            await session.request_shutdown()
            await asyncio.wait_for(run, 60)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "fork_server": os.environ.get(FORK_SERVER_VARIABLE) != "0",
        "system": "examples/hello (greeter: 2 replicas, edited; front: 1)",
        "edits": edits,
        "clients": CLIENTS,
        "requests": loop.requests,
        "failed_requests": len(loop.failures),
        "failures_sample": loop.failures[:5],
        "save_to_new_code_s": {
            "median": round(statistics.median(first_new), 3),
            "p95": round(percentile(first_new, 0.95), 3),
            "max": round(max(first_new), 3),
        },
        "save_to_reload_done_s": {
            "median": round(statistics.median(reloaded), 3),
            "p95": round(percentile(reloaded, 0.95), 3),
        },
        "goal_median_s": 1.0,
    }


def _outcome(events: list[WatchEvent]) -> Reloaded | ReloadFailed | None:
    return next((e for e in events if isinstance(e, Reloaded | ReloadFailed)), None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=20)
    args = parser.parse_args()
    result = asyncio.run(main(args.edits))
    print(result)
    print(write_result("watch.json", result))
