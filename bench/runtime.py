"""``corral up`` to all-ready of examples/hello and examples/ridehail under each runtime
(process, docker, podman), cold and warm, kill -9 of an instance to its replacement
ready, and the exported stacks deployed on a single-node Docker Swarm to converged, in
one run.

- cold: a fresh copy of the system (no ``.corral``); under a container runtime the
  system's service images are removed from both engines first, so they are built (base
  image and wheelhouse kept). For the process runtime, cold is the fresh copy's first up.
- warm: the same folder again, images present.
- kill9_to_ready: ``corral chaos kill`` of one instance to its replacement ready.
- swarm: ``corral export swarm --offline``, every image built (build_s), ``docker stack
  deploy`` to every service at its replicas and the gateway answering (deploy_s),
  ``docker stack rm`` to nothing left (remove_s).

The process runtime is measured as this branch has it (main's process driver; another
branch is building a fork server for it).

    uv run python bench/runtime.py   # -> bench/results/runtime.json

Goal (issue 13): a warm docker ``up`` of hello within 2x the process runtime's."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import free_port, write_result
from ruamel.yaml import YAML

from corral.api import ApiClient

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ("process", "docker", "podman")
SYSTEMS = {
    # system: (warm rounds, the instance kill -9 hits, a gateway path that answers 200)
    "hello": (3, "greeter-1", "/greet/ada"),
    "ridehail": (2, "rides-1", "/auth/.well-known/jwks.json"),
}


def run(*argv: str, cwd: Path, timeout: float = 1500, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    if done.returncode != 0:
        output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        raise RuntimeError(f"{' '.join(argv)} failed:\n{output}")
    return done.stdout


def corral(*args: str, cwd: Path) -> float:
    began = time.monotonic()
    run(sys.executable, "-m", "corral", *args, cwd=cwd)
    return time.monotonic() - began


def copy(system: str, folder: Path) -> Path:
    """The example, renamed ``bench-<system>``: its images and containers are the
    bench's own (other people's tests on this machine build and run ``hello``'s), so
    removing them for a cold start touches nobody else's."""
    root = folder / system
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(
        ROOT / "examples" / system,
        root,
        ignore=shutil.ignore_patterns(".corral", "deploy", "__pycache__", ".venv"),
    )
    manifest = root / "corral.yaml"
    text = manifest.read_text()
    assert f"\nname: {system}\n" in text
    manifest.write_text(text.replace(f"\nname: {system}\n", f"\nname: {bench_name(system)}\n"))
    return root


def bench_name(system: str) -> str:
    return f"bench-{system}"


def remove_images(system: str) -> None:
    for engine in ("docker", "podman"):  # else the images are copied, not built
        out = subprocess.run(
            [engine, "images", "--filter", f"label=corral.system={bench_name(system)}", "-q"],
            capture_output=True, text=True, check=False,
        ).stdout.split()  # fmt: skip
        if out:
            subprocess.run([engine, "rmi", "--force", *set(out)], capture_output=True, check=False)


def kill_to_ready(root: Path, instance: str) -> float:
    with ApiClient.for_state_dir(root / ".corral") as api:
        before = next(r for r in api.instances() if r.instance == instance)
        began = time.monotonic()
        api.chaos_kill(instance)
        while True:
            now = next((r for r in api.instances() if r.instance == instance), None)
            if now and now.ready and now.restarts > before.restarts:
                return time.monotonic() - began
            if time.monotonic() - began > 180:
                raise RuntimeError(f"no replacement of {instance} within 180s")
            time.sleep(0.02)


def median(values: list[float]) -> float:
    return round(sorted(values)[len(values) // 2], 2)


def measure(runtime: str, system: str, folder: Path) -> dict[str, Any]:
    rounds, victim, _ = SYSTEMS[system]
    root = copy(system, folder / runtime)
    if runtime != "process":
        remove_images(system)
    result: dict[str, Any] = {"load_before": [round(v, 2) for v in os.getloadavg()]}
    result["cold_up_s"] = round(corral("up", "-d", "--runtime", runtime, cwd=root), 2)
    corral("down", cwd=root)
    warm, kills = [], []
    for _ in range(rounds):
        warm.append(corral("up", "-d", "--runtime", runtime, cwd=root))
        kills.append(kill_to_ready(root, victim))
        corral("down", cwd=root)
    result["warm_up_s"] = [round(v, 2) for v in warm]
    result["warm_up_median_s"] = median(warm)
    result["kill9_to_ready_s"] = [round(v, 2) for v in kills]
    result["kill9_to_ready_median_s"] = median(kills)
    result["load_after"] = [round(v, 2) for v in os.getloadavg()]
    return result


def docker(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return run("docker", *args, cwd=cwd or ROOT, env={"DOCKER_BUILDKIT": "0", **(env or {})})


def swarm(system: str, folder: Path) -> dict[str, Any]:
    """Export, build, deploy to converged and answering, remove."""
    _, _, path = SYSTEMS[system]
    root = copy(system, folder / "swarm")
    port = free_port()
    manifest = root / "corral.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("\ngateway:\n", f"\ngateway:\n  port: {port}\n", 1))
    result: dict[str, Any] = {"load_before": [round(v, 2) for v in os.getloadavg()]}
    began = time.monotonic()
    corral("export", "swarm", "--offline", "--tag", "bench", cwd=root)
    compose = YAML(typ="safe").load(root / "deploy/compose/compose.yaml")
    for spec in compose["services"].values():
        if "build" in spec:
            docker("build", "--network", "none", "-q", "-f", spec["build"]["dockerfile"],
                   "-t", spec["image"], ".", cwd=root)  # fmt: skip
    result["export_and_build_s"] = round(time.monotonic() - began, 2)
    stack = bench_name(system)
    began = time.monotonic()
    docker("stack", "deploy", "--resolve-image", "never", "-c", "stack.yaml", stack,
           cwd=root / "deploy" / "swarm")  # fmt: skip
    try:
        while not converged(stack) or not answers(f"http://127.0.0.1:{port}{path}"):
            if time.monotonic() - began > 300:
                raise RuntimeError(f"{stack} not converged within 300s:\n{replicas(stack)}")
            time.sleep(0.25)
        result["deploy_to_converged_s"] = round(time.monotonic() - began, 2)
        result["replicas"] = replicas(stack)
    finally:
        began = time.monotonic()
        subprocess.run(["docker", "stack", "rm", stack], capture_output=True, check=False)
        while docker("service", "ls", "-q", "--filter",
                     f"label=com.docker.stack.namespace={stack}").strip():  # fmt: skip
            time.sleep(0.25)
        result["remove_s"] = round(time.monotonic() - began, 2)
    return result


def replicas(stack: str) -> dict[str, str]:
    out = docker("stack", "services", stack, "--format", "{{.Name}} {{.Replicas}}")
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def converged(stack: str) -> bool:
    now = replicas(stack)
    return bool(now) and all(r.split("/")[0] == r.split("/")[1].split(" ")[0] for r in now.values())


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


SHARED_CACHE = Path("/var/tmp/corral-images")  # corral.images' default
BENCH_CACHE = Path("/var/tmp/corral-bench-images")


def private_cache() -> None:
    """A wheelhouse cache of the bench's own (other checkouts' runs on this machine
    prune the shared one), seeded with the shared cache's downloaded dependencies
    (hard links), so no download is timed."""
    os.environ["CORRAL_IMAGE_CACHE"] = str(BENCH_CACHE)
    BENCH_CACHE.mkdir(parents=True, exist_ok=True)
    for deps in SHARED_CACHE.glob("dependencies-*"):
        target = BENCH_CACHE / deps.name
        if not deps.name.startswith("dependencies-partial") and not target.exists():
            shutil.copytree(deps, target, copy_function=os.link)


def main(systems: list[str], with_swarm: bool) -> None:
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="corral-bench-run-"))
    private_cache()
    commit = run("git", "rev-parse", "HEAD", cwd=ROOT).strip()
    results: dict[str, Any] = {}
    swarms: dict[str, Any] = {}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="corral-bench-runtime-") as scratch:
        folder = Path(scratch)
        for system in systems:
            results[system] = {}
            for runtime in RUNTIMES:
                print(f"{system} under {runtime}…", flush=True)
                try:
                    results[system][runtime] = measure(runtime, system, folder)
                except RuntimeError as exc:
                    results[system][runtime] = {"error": str(exc)[-2000:]}
                print(f"  {results[system][runtime]}", flush=True)
        created = with_swarm and "inactive" in docker(
            "info", "--format", "{{.Swarm.LocalNodeState}}"
        )
        if created:
            docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        try:
            for system in systems if with_swarm else []:
                print(f"{system} on Swarm…", flush=True)
                try:
                    swarms[system] = swarm(system, folder)
                except RuntimeError as exc:
                    swarms[system] = {"error": str(exc)[-2000:]}
                print(f"  {swarms[system]}", flush=True)
        finally:
            if created:
                docker("swarm", "leave", "--force")
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ratios = {}
    for system, by_runtime in results.items():
        process = by_runtime.get("process", {}).get("warm_up_median_s")
        for runtime in ("docker", "podman"):
            warm = by_runtime.get(runtime, {}).get("warm_up_median_s")
            if process and warm:
                ratios[f"{system}_{runtime}_warm_over_process"] = round(warm / process, 2)
    data = {
        "what": "corral up -d to all instances ready (the command's wall time) of hello "
        "and ridehail; cold = fresh copy, service images removed from both engines "
        "(base image and wheelhouse kept); warm = the same folder again, images present; "
        "kill9_to_ready = chaos kill of one instance to its replacement ready; swarm = "
        "export --offline + docker build of every image, stack deploy to every service "
        "at its replicas and the gateway answering, stack rm to no service left",
        "commit": commit,
        "process_runtime": "the process driver, app: instances forked from the warm fork server"
        if os.environ.get("CORRAL_FORK_SERVER") != "0"
        else "the process driver, every instance spawned (CORRAL_FORK_SERVER=0)",
        "cache_note": "a private CORRAL_IMAGE_CACHE seeded with the downloaded dependencies: "
        "cold includes building corral's wheel, not downloading dependencies",
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "load_note": "a shared 2-core machine: other engineers' test suites ran meanwhile; "
        "each entry records os.getloadavg() before and after",
        "wall_s": round(time.monotonic() - began, 1),
        "cli_cpu_s": round(
            (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime),
            1,
        ),
        "cpu_note": "cli_cpu_s counts only the CLI processes this script waited for; the "
        "orchestrators (detached) and the containers (under the engines) are not in it",
        "systems": results,
        "swarm": swarms,
        "ratios": ratios,
        "goal": "hello_docker_warm_over_process <= 2.0",
    }
    if set(systems) != set(SYSTEMS) or not with_swarm:
        data = _merged(data, systems, with_swarm)
    path = write_result("runtime.json", data)
    print(path)


def _merged(data: dict[str, Any], systems: list[str], with_swarm: bool) -> dict[str, Any]:
    """A run of some systems replaces only their entries of the stored results; each
    system's runtimes still come from one run (side by side), named in ``runs``."""
    path = ROOT / "bench" / "results" / "runtime.json"
    stored: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    runs = stored.get("runs", {})
    for system in systems:
        runs[system] = {
            "commit": data["commit"],
            "wall_s": data["wall_s"],
            "process_runtime": data["process_runtime"],
        }
        stored.setdefault("systems", {})[system] = data["systems"][system]
        if with_swarm:
            stored.setdefault("swarm", {})[system] = data["swarm"][system]
    stored.setdefault("ratios", {}).update(data["ratios"])
    stored["runs"] = runs
    for key in ("what", "cache_note", "machine", "load_note", "cpu_note"):
        stored[key] = data[key]
    stored.setdefault("goal", data["goal"])
    return stored


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--systems",
        nargs="+",
        choices=sorted(SYSTEMS),
        default=list(SYSTEMS),
        help="measure only these (their stored entries are replaced, the others kept)",
    )
    parser.add_argument("--no-swarm", action="store_true", help="skip the Swarm deployment")
    args = parser.parse_args()
    main(args.systems, with_swarm=not args.no_swarm)
