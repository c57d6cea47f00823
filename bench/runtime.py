"""``corral up`` of examples/hello to all-ready under each runtime (process, docker,
podman), cold (the service images removed from both engines first, so they are built;
base image and wheelhouse kept) and
warm (images present), and kill -9 of an instance to its replacement ready.

    uv run python bench/runtime.py   # -> bench/results/runtime.json

Goal (issue 13): a warm docker ``up`` of hello within 2x the process runtime's."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import write_result

from corral.api import ApiClient

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ("process", "docker", "podman")
ROUNDS = 3


def corral(*args: str, cwd: Path) -> float:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "corral", *args], cwd=cwd, capture_output=True, text=True,
        timeout=1200, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"corral {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return time.monotonic() - began


def remove_images(engine: str) -> None:
    out = subprocess.run(
        [engine, "images", "--filter", "label=corral.system=hello", "-q"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    if out:
        subprocess.run([engine, "rmi", "--force", *set(out)], capture_output=True, check=False)


def kill_to_ready(root: Path) -> float:
    with ApiClient.for_state_dir(root / ".corral") as api:
        before = next(r for r in api.instances() if r.instance == "greeter-1")
        began = time.monotonic()
        api.chaos_kill("greeter-1")
        while True:
            now = next(r for r in api.instances() if r.instance == "greeter-1")
            if now.ready and now.restarts > before.restarts:
                return time.monotonic() - began
            if time.monotonic() - began > 120:
                raise SystemExit("no replacement within 120s")
            time.sleep(0.02)


def measure(runtime: str, folder: Path) -> dict[str, Any]:
    root = folder / runtime / "hello"
    shutil.copytree(
        ROOT / "examples" / "hello", root, ignore=shutil.ignore_patterns(".corral", "deploy")
    )
    result: dict[str, Any] = {}
    if runtime != "process":
        for engine in ("docker", "podman"):  # else the images are copied, not built
            remove_images(engine)
        result["cold_up_s"] = round(corral("up", "-d", "--runtime", runtime, cwd=root), 2)
        corral("down", cwd=root)
    warm, kills = [], []
    for _ in range(ROUNDS):
        warm.append(corral("up", "-d", "--runtime", runtime, cwd=root))
        kills.append(kill_to_ready(root))
        corral("down", cwd=root)
    result["warm_up_s"] = [round(v, 2) for v in warm]
    result["warm_up_median_s"] = round(sorted(warm)[len(warm) // 2], 2)
    result["kill9_to_ready_s"] = [round(v, 3) for v in kills]
    result["kill9_to_ready_median_s"] = round(sorted(kills)[len(kills) // 2], 3)
    return result


def main() -> None:
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="corral-bench-run-"))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="corral-bench-runtime-") as folder:
        for runtime in RUNTIMES:
            print(f"{runtime}…", flush=True)
            results[runtime] = measure(runtime, Path(folder))
            print(f"  {results[runtime]}", flush=True)
    process = results["process"]["warm_up_median_s"]
    data = {
        "what": "corral up -d of examples/hello to all instances ready (the command's wall "
        "time), cold = service images removed first (base image and wheelhouse kept), "
        "warm = images present; kill9_to_ready = chaos kill of greeter-1 to its "
        "replacement ready",
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "load_note": "measured on a shared 2-core machine with other test suites running",
        "rounds": ROUNDS,
        "runtimes": results,
        "ratios": {
            f"{r}_warm_over_process": round(results[r]["warm_up_median_s"] / process, 2)
            for r in RUNTIMES
            if r != "process"
        },
        "goal": "docker_warm_over_process <= 2.0",
    }
    path = write_result("runtime.json", data)
    print(path)


if __name__ == "__main__":
    main()
