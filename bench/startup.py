"""Start-up benchmarks (not tests: timing goals live here, never in assertions).

1. ``python -c "import corral.sdk"`` against ``python -c "import fastapi, uvicorn"`` (what
   any FastAPI service imports), alternating in one run; and the same import of the SDK
   at a base commit (default: ``main``), so before and after are side by side. Figures
   are the median CPU time (user + system) of the child: the machine is shared, and CPU
   time is what load distorts least. Goal: SDK <= 1.3x FastAPI + uvicorn.
2. ``-X importtime``: where the SDK's import time goes (top-level imports, cumulative).
3. Bytecode: the SDK's import with compiled bytecode, with ``PYTHONDONTWRITEBYTECODE=1``
   and no bytecode anywhere (every start compiles everything), and with the cache
   ``corral up`` gives such users (``PYTHONPYCACHEPREFIX`` under ``.corral/``: only the
   first start compiles; see corral.runtime._environ).
4. ``kill -9`` of hello's greeter (the real SDK service, one replica) to its
   replacement being ready, each kill a first crash, with the fork server (the default:
   instances fork from a warm interpreter, corral.runtime._forkserver) and without
   (``CORRAL_FORK_SERVER=0``: a fresh interpreter each), side by side. Goal: <= 0.3 s.
5. ``corral up -d examples/ridehail`` to all ready, warm (a first up ran: databases
   migrated, bytecode compiled), with and without the fork server, alternating: the
   command's wall time, the CPU of the control plane, fork server, instances and
   components, and the key phases of the start-up timeline (``status --json``'s
   ``startup``, seconds since the command began). Goal: <= 3 s.
6. Client commands (``corral status`` with no system running, ``corral --version``):
   their CPU here and at the base, alternating (what a command that only talks to the
   API imports).

Run: ``uv run python bench/startup.py [--rounds N] [--base REV]``; writes
bench/results/startup.json. ``--ridehail-only`` (or ``--kills-only``, ``--commands-only``)
measures that part alone and updates its key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import psutil
from _common import git_commit, write_result
from orchestrator_startup import kills_to_ready, orchestrator_for

from corral.runtime.drivers import FORK_SERVER_VARIABLE

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello"
SDK = "import corral.sdk"
FASTAPI = "import fastapi, uvicorn"


def child_cpu(code: str, env: Mapping[str, str] | None = None) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``python -c code`` in a child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def base_checkout(rev: str, into: Path) -> Path | None:
    """``src/`` of ``rev`` extracted under ``into`` (None when git cannot)."""
    archive = into / "base.tar"
    try:
        with archive.open("wb") as out:
            subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True, stdout=out)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    # Compiled once, like the working tree's: the comparison is of imports, not compiles.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(into / "src")], check=True)
    return into / "src"


def imports(rounds: int, base_src: Path | None) -> dict[str, object]:
    env_base = {**os.environ, "PYTHONPATH": str(base_src)} if base_src else None
    cases: dict[str, tuple[str, Mapping[str, str] | None]] = {
        "sdk": (SDK, None),
        "fastapi_uvicorn": (FASTAPI, None),
    }
    if env_base is not None:
        cases["sdk_at_base"] = (SDK, env_base)
    for code, env in cases.values():
        child_cpu(code, env)  # warm the page cache for every side
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for index in range(rounds):
        shift = index % len(names)  # rotate who goes first
        for name in names[shift:] + names[:shift]:
            code, env = cases[name]
            c, w = child_cpu(code, env)
            cpu[name].append(c)
            wall[name].append(w)
    med = {name: statistics.median(values) for name, values in cpu.items()}
    result: dict[str, object] = {
        "rounds": rounds,
        "cpu_median_seconds": {k: round(v, 4) for k, v in med.items()},
        "wall_median_seconds": {k: round(statistics.median(v), 4) for k, v in wall.items()},
        "ratio_sdk_vs_fastapi_uvicorn": round(med["sdk"] / med["fastapi_uvicorn"], 3),
        "goal_ratio": 1.3,
    }
    if "sdk_at_base" in med:
        result["ratio_sdk_at_base_vs_fastapi_uvicorn"] = round(
            med["sdk_at_base"] / med["fastapi_uvicorn"], 3
        )
        result["ratio_sdk_vs_sdk_at_base"] = round(med["sdk"] / med["sdk_at_base"], 3)
    return result


def client_commands(rounds: int, base_src: Path | None) -> dict[str, object]:
    """CPU of commands that only talk to the API, here and at the base, alternating:
    ``corral status`` (no system running: the whole import and manifest path, then its
    message) and ``corral --version``. What they import is what a client pays."""
    commands = {"status": ["status", str(RIDEHAIL)], "version": ["--version"]}
    # An empty list of running systems: `status` would otherwise list (and ask) the
    # systems other people run on this machine.
    alone = {**os.environ, "XDG_RUNTIME_DIR": tempfile.mkdtemp(prefix="corral-bench-")}
    sides: dict[str, Mapping[str, str] | None] = {"here": alone}
    if base_src is not None:
        sides["base"] = {**alone, "PYTHONPATH": str(base_src)}
    cases = {
        f"{command}_{side}": (
            f"import sys\nsys.argv = ['corral', *{argv!r}]\nfrom corral.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n",
            env,
        )
        for command, argv in commands.items()
        for side, env in sides.items()
    }
    for code, env in cases.values():
        child_cpu(code, env)  # warm: page cache, bytecode
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            code, env = cases[name]
            cpu[name].append(child_cpu(code, env)[0])
    med = {name: statistics.median(values) for name, values in cpu.items()}
    result: dict[str, object] = {
        "rounds": rounds,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cpu_median_seconds": {k: round(v, 4) for k, v in med.items()},
    }
    for command in commands:
        if f"{command}_base" in med:
            result[f"ratio_{command}_vs_base"] = round(
                med[f"{command}_here"] / med[f"{command}_base"], 3
            )
    return result


def importtime_breakdown(top: int = 15) -> list[dict[str, object]]:
    """The SDK's direct imports and theirs (two levels), by cumulative microseconds."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", SDK], capture_output=True, text=True
    )
    rows = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) <= 5:  # the SDK itself, its modules, their imports
            rows.append({"module": m.group(3), "cumulative_us": int(m.group(1))})
    rows.sort(key=lambda row: -int(str(row["cumulative_us"])))
    return rows[:top]


def bytecode(rounds: int) -> dict[str, object]:
    """CPU of the SDK's import: cached bytecode; none at all (``PYTHONDONTWRITEBYTECODE``
    where nothing was compiled); and the prefix cache corral up sets (after its first
    start)."""
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty"
        prefix = Path(tmp) / "pycache"
        empty.mkdir()
        none = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(empty)}
        # What corral.runtime._environ gives an instance where the user set
        # PYTHONDONTWRITEBYTECODE.
        cached_prefix = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            "PYTHONPYCACHEPREFIX": str(prefix),
        }
        first_start, _ = child_cpu(SDK, cached_prefix)  # compiles into the prefix
        samples: dict[str, list[float]] = {"compiled": [], "no_bytecode": [], "prefix_cache": []}
        envs: dict[str, Mapping[str, str] | None] = {
            "compiled": None,
            "no_bytecode": none,
            "prefix_cache": cached_prefix,
        }
        for _ in range(rounds):
            for name, env in envs.items():
                samples[name].append(child_cpu(SDK, env)[0])
        shutil.rmtree(prefix, ignore_errors=True)
    med = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "rounds": rounds,
        "cpu_median_seconds": {k: round(v, 4) for k, v in med.items()},
        "prefix_cache_first_start_cpu_seconds": round(first_start, 4),
        "ratio_no_bytecode_vs_compiled": round(med["no_bytecode"] / med["compiled"], 3),
        "ratio_prefix_cache_vs_compiled": round(med["prefix_cache"] / med["compiled"], 3),
    }


GREETER_MANIFEST = {
    "name": "bench-greeter",
    "services": {
        "greeter": {
            "app": "greeter.app:svc",
            "database": "none",
            "readiness": {"http": "/readyz", "period": "1s"},
            "restart": {"backoff": {"reset_after": "1s"}},
        }
    },
}


@contextlib.contextmanager
def fork_server(on: bool) -> Iterator[None]:
    """The fork server on (the default) or off (``CORRAL_FORK_SERVER=0``)."""
    old = os.environ.get(FORK_SERVER_VARIABLE)
    os.environ[FORK_SERVER_VARIABLE] = "1" if on else "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(FORK_SERVER_VARIABLE, None)
        else:
            os.environ[FORK_SERVER_VARIABLE] = old


async def greeter_kill_to_ready_both(rounds: int) -> dict[str, object]:
    """Kill -9 to ready with and without the fork server, one after the other."""
    result: dict[str, object] = {}
    for name, on in (("fork_server", True), ("spawn", False)):
        with fork_server(on):
            result[name] = await greeter_kill_to_ready(rounds)
    forked = result["fork_server"]
    spawned = result["spawn"]
    assert isinstance(forked, dict)
    assert isinstance(spawned, dict)
    result["ratio_fork_server_vs_spawn"] = round(forked["median"] / spawned["median"], 3)
    result["goal_seconds"] = 0.3
    return result


RIDEHAIL = ROOT / "examples" / "ridehail"
_KEY_PHASES = (
    "control plane start",
    "api",
    "fork server 1",
    "addon config",
    "addon broker",
    "addon gateway",
    "addon telemetry",
)


def _corral(
    *args: str, on: bool, check: bool = True, src: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m corral ARGS examples/ridehail``; ``src``: Corral's code from there
    (a base revision's), not the working tree's."""
    env = {**os.environ, FORK_SERVER_VARIABLE: "1" if on else "0"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return subprocess.run(
        [sys.executable, "-m", "corral", *args, str(RIDEHAIL)],
        check=check, env=env, capture_output=True, text=True,
    )  # fmt: skip


def _tree_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of the control plane and of its descendants, by kind."""
    root = psutil.Process(pid)
    cpu = {"control_plane": 0.0, "fork_server": 0.0, "instances": 0.0, "components": 0.0}
    times = root.cpu_times()
    cpu["control_plane"] = times.user + times.system
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            used = times.user + times.system
            line = " ".join(child.cmdline())
            if "_forkserver_main" in line and child.ppid() == pid:
                cpu["fork_server"] += used
            elif "corral.sdk.serve" in line or "_forkserver_main" in line:
                cpu["instances"] += used
            else:  # nats-server, envoy, the reaper
                cpu["components"] += used
    return {k: round(v, 3) for k, v in cpu.items()}


def _phases(status: dict[str, object], offset: float) -> dict[str, object]:
    """The timeline's key phases (seconds since `corral up` began): when each ended,
    the first instance spawned, the last one listening, all ready."""
    phases = {p["name"]: p for p in status.get("startup", [])}  # type: ignore[attr-defined]
    out: dict[str, object] = {}
    for name in _KEY_PHASES:
        phase = phases.get(name)
        if phase is not None and phase["end"] is not None:
            out[name] = [round(phase["start"] + offset, 3), round(phase["end"] + offset, 3)]
    instances = [
        p for name, p in phases.items() if name.startswith("instance ") and "corral-" not in name
    ]
    if instances:
        out["first instance spawned"] = round(min(p["start"] for p in instances) + offset, 3)
        listening = [p["marks"]["listening"] for p in instances if "listening" in p["marks"]]
        if listening:
            out["last instance listening"] = round(max(listening) + offset, 3)
        ends = [p["end"] - p["start"] for p in instances if p["end"] is not None]
        out["instance spawned_to_ready_median"] = round(statistics.median(ends), 3)
    if phases.get("up", {}).get("end") is not None:
        out["all ready (control plane)"] = round(phases["up"]["end"] + offset, 3)
    return out


def ridehail_up_once(on: bool, src: Path | None = None) -> dict[str, object]:
    """One warm ``corral up -d`` of ridehail to all ready: the command's wall time, the
    timeline of the start, and the CPU each part used, then ``corral down``."""
    load = os.getloadavg()[0]
    began_wall = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    _corral("up", "-d", on=on, src=src)
    seconds = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The command's own CPU (its daemon is not its waited-for child, so not in it).
    command_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    status = json.loads(_corral("status", "--json", on=on, src=src).stdout)
    try:
        cpu = _tree_cpu(int(status["pid"]))
        offset = psutil.Process(int(status["pid"])).create_time() - began_wall
    finally:
        _corral("down", on=on, check=False, src=src)
    instances = sum(
        int(service["replicas"])
        for service in status["services"].values()
        if not service["component"]
    )
    return {
        "seconds": round(seconds, 3),
        "loadavg_1m": round(load, 2),
        "cpu_seconds": {"command": round(command_cpu, 3), **cpu},
        "instance_cpu_seconds_mean": round(cpu["instances"] / instances, 3),
        "phases": _phases(status, offset),
    }


def ridehail_up(rounds: int, base_src: Path | None = None) -> dict[str, object]:
    """``corral up -d examples/ridehail`` to all ready, warm, fork server on and off,
    and (``base_src``) the base revision's Corral with its fork server, in rotation;
    each up followed by ``corral down``. Per mode: every sample's wall time, load, CPU
    by part and the timeline's key phases (the base may have no timeline)."""
    modes: dict[str, tuple[bool, Path | None]] = {
        "fork_server": (True, None),
        "spawn": (False, None),
    }
    if base_src is not None:
        modes["base_fork_server"] = (True, base_src)
    for on, src in modes.values():  # warm: databases migrated, bytecode compiled
        _corral("up", "-d", on=on, src=src)
        _corral("down", on=on, src=src)
    samples: dict[str, list[dict[str, object]]] = {name: [] for name in modes}
    names = list(modes)
    for index in range(rounds):
        shift = index % len(names)  # rotate who goes first
        for name in names[shift:] + names[:shift]:
            on, src = modes[name]
            samples[name].append(ridehail_up_once(on, src))
    med = {
        name: statistics.median(float(str(x["seconds"])) for x in values)
        for name, values in samples.items()
    }
    cpu_med = {
        name: {
            part: round(statistics.median(float(x["cpu_seconds"][part]) for x in values), 3)  # type: ignore[index]
            for part in ("command", "control_plane", "fork_server", "instances", "components")
        }
        for name, values in samples.items()
    }
    ratios = {}
    if "base_fork_server" in med:
        ratios["ratio_fork_server_vs_base"] = round(med["fork_server"] / med["base_fork_server"], 3)
    return {
        **ratios,
        "rounds": rounds,
        "pythondontwritebytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
        "samples": samples,
        "seconds": {k: [x["seconds"] for x in v] for k, v in samples.items()},
        "median_seconds": {k: round(v, 3) for k, v in med.items()},
        "median_cpu_seconds": cpu_med,
        "ratio_fork_server_vs_spawn": round(med["fork_server"] / med["spawn"], 3),
        "goal_seconds": 3.0,
        "goal_met": med["fork_server"] <= 3.0,
    }


async def greeter_kill_to_ready(rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(HELLO / "greeter", root / "greeter")
        orch = orchestrator_for(root, json.dumps(GREETER_MANIFEST))
        began = time.perf_counter()
        await orch.up()
        up_seconds = time.perf_counter() - began
        samples: list[float] = []
        cpus: list[float] = []

        def cpu_to_ready(pid: int) -> None:
            # The replacement's own CPU to ready (read at once; it idles after): what the
            # machine's load cannot stretch, unlike the wall time.
            with contextlib.suppress(psutil.NoSuchProcess):
                times = psutil.Process(pid).cpu_times()
                cpus.append(times.user + times.system)

        try:
            kills = await kills_to_ready(orch, "greeter-1", rounds, on_ready=cpu_to_ready)
            samples.extend(seconds for seconds, _ in kills)
        finally:
            await orch.down()
    return {
        "up_seconds": round(up_seconds, 4),
        "seconds": [round(x, 4) for x in samples],
        "median": round(statistics.median(samples), 4),
        "max": round(max(samples), 4),
        "replacement_cpu_seconds_median": round(statistics.median(cpus), 4) if cpus else None,
        "goal_seconds": 0.3,
    }


def main(rounds: int, base: str) -> dict[str, object]:
    load_before = os.getloadavg()
    # A warm environment: the working tree's bytecode exists (the base's is compiled too).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        base_src = base_checkout(base, Path(tmp)) if base else None
        result: dict[str, object] = {
            "commit": git_commit(),
            "base": base,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "loadavg_before": [round(x, 2) for x in load_before],
            },
            "import": imports(rounds, base_src),
        }
    result["importtime_sdk"] = importtime_breakdown()
    result["bytecode"] = bytecode(max(3, rounds // 2))
    kills = asyncio.run(greeter_kill_to_ready_both(max(3, rounds // 2)))
    # Kept key: the default runtime's figure (now with the fork server).
    result["greeter_kill9_to_ready"] = kills["fork_server"]
    result["greeter_kill9_to_ready_with_without_fork_server"] = kills
    with tempfile.TemporaryDirectory() as tmp:
        base_src = base_checkout(base, Path(tmp)) if base else None
        ridehail = ridehail_up(max(2, rounds // 5), base_src)
        result["client_commands"] = client_commands(rounds, base_src)
    result["ridehail_up_all_ready_warm"] = ridehail
    if not ridehail["goal_met"]:
        print("GOAL MISSED: ridehail all ready over 3 s", file=sys.stderr)
    machine = result["machine"]
    assert isinstance(machine, dict)
    machine["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    imp = result["import"]
    assert isinstance(imp, dict)
    if float(imp["ratio_sdk_vs_fastapi_uvicorn"]) > float(imp["goal_ratio"]):
        print("GOAL MISSED: import corral.sdk is over 1.3x fastapi + uvicorn", file=sys.stderr)
    if float(imp.get("ratio_sdk_vs_sdk_at_base", 0)) > 1.05:
        print("REGRESSION: import corral.sdk got slower than at the base", file=sys.stderr)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--base", default="main", help="git revision to compare ('' for none)")
    parser.add_argument(
        "--ridehail-only",
        action="store_true",
        help="measure examples/ridehail's corral up -d to all ready only (with and without "
        "the fork server) and update that key of bench/results/startup.json",
    )
    parser.add_argument(
        "--commands-only",
        action="store_true",
        help="measure the CPU of client commands (corral status, --version) here and at "
        "the base only, and update that key of bench/results/startup.json",
    )
    parser.add_argument(
        "--kills-only",
        action="store_true",
        help="measure kill -9 -> ready only (with and without the fork server) and update "
        "those keys of bench/results/startup.json",
    )
    args = parser.parse_args()
    if args.ridehail_only:
        path = Path(__file__).parent / "results" / "startup.json"
        result = json.loads(path.read_text())
        before = os.getloadavg()
        with tempfile.TemporaryDirectory() as tmp:
            base_src = base_checkout(args.base, Path(tmp)) if args.base else None
            ridehail = ridehail_up(max(2, args.rounds // 5), base_src)
        ridehail["commit"] = git_commit()
        ridehail["base"] = args.base
        ridehail["loadavg_before"] = [round(x, 2) for x in before]
        ridehail["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        result["ridehail_up_all_ready_warm"] = ridehail
        if not ridehail["goal_met"]:
            print("GOAL MISSED: ridehail all ready over 3 s", file=sys.stderr)
    elif args.commands_only:
        path = Path(__file__).parent / "results" / "startup.json"
        result = json.loads(path.read_text())
        with tempfile.TemporaryDirectory() as tmp:
            base_src = base_checkout(args.base, Path(tmp)) if args.base else None
            commands = client_commands(args.rounds, base_src)
        commands["commit"] = git_commit()
        commands["base"] = args.base
        result["client_commands"] = commands
    elif args.kills_only:
        path = Path(__file__).parent / "results" / "startup.json"
        result = json.loads(path.read_text())
        before = os.getloadavg()
        kills = asyncio.run(greeter_kill_to_ready_both(max(3, args.rounds // 2)))
        kills["commit"] = git_commit()
        kills["loadavg_before"] = [round(x, 2) for x in before]
        kills["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        result["greeter_kill9_to_ready"] = kills["fork_server"]
        result["greeter_kill9_to_ready_with_without_fork_server"] = kills
    else:
        result = main(args.rounds, args.base)
    write_result("startup.json", result)
    print(json.dumps(result, indent=2))
