"""SDK overhead: the same handlers through corral.sdk (metrics, logs, tracing on) and as a
bare FastAPI app, on the same server with the same settings (uvicorn, uvloop, httptools,
access log and server header off), side by side in one run. Load comes from wrk in a
separate process, to 127.0.0.1 only, bounded in duration. Results:
bench/results/sdk_overhead.json (goal: SDK >= 0.85x bare throughput).

More sides measure what exporting spans costs (``--export``, on by default), with
``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at the control plane's own OTLP receiver
(corral.telemetry behind the API's router, in its own process), every request's span
exported: ``sdk_export`` is the SDK as it is (the middleware's lean server span, the
queue processor, the direct encoder), ``sdk_export_old`` the path it replaced (the SDK
tracer's ``start_span``, ``BatchSpanProcessor``, the official protobuf encoder), and with
``--sampled`` the new path sampled at 10% (``parentbased_traceidratio``). Their ratios
are against the SDK without export (goal: CPU per request <= 1.2x), and the receiver's
CPU per exported request is recorded too (control-plane CPU, not the service's).

Rounds alternate which app goes first; the ratio reported is the median of the per-round
ratios (both apps measured minutes apart at most). On a shared machine req/s swings with
the neighbours, so each run also records the server process's CPU time per request
(user+system from /proc): its ratio is what the SDK costs per request, whatever the load.

    uv run python bench/sdk_overhead.py [--duration 5] [--rounds 4] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import free_port, git_commit, parse_wrk, write_result

HERE = Path(__file__).resolve().parent
ECHO_BODY = json.dumps({"rider": "ada", "pickup": [52.52, 13.405], "seats": 2, "note": "x" * 64})


# --- the apps under test -------------------------------------------------------------
def build_bare() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        return {"message": f"hello {name}"}

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def build_sdk() -> Any:
    from corral.sdk import Service

    svc = Service("bench")

    @svc.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        return {"message": f"hello {name}"}

    @svc.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    return svc


RECEIVER_TOKEN = "bench-ingest-token"


def serve_receiver(port: int) -> None:
    """Child process: the control plane's OTLP receiver (telemetry router + trace store)."""
    import uvicorn
    from fastapi import Depends, FastAPI

    from corral.api._problems import install
    from corral.api._telemetry import telemetry_router
    from corral.telemetry import TelemetryAddon

    addon = TelemetryAddon()
    addon.ingest_token = RECEIVER_TOKEN
    app = FastAPI()
    install(app)
    app.include_router(telemetry_router(addon, admin=Depends(lambda: None)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def export_env(receiver_port: int, *, ratio: float | None) -> dict[str, str]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver_port}/otlp",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"authorization=Bearer%20{RECEIVER_TOKEN}",
    }
    if ratio is not None:
        env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        env["OTEL_TRACES_SAMPLER_ARG"] = str(ratio)
    return env


def use_old_export_path() -> None:
    """In this (child) process, export spans the way the SDK did before the lean path:
    the SDK tracer's own server span, BatchSpanProcessor, the official encoder."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind

    from corral.sdk import _service, _tracing
    from corral.sdk._middleware import TelemetryMiddleware
    from corral.sdk._span_redaction import RedactingSpanExporter

    lean = _tracing.build_tracer_provider

    def build(*, service: str, instance: str, endpoint: str | None) -> Any:
        provider = lean(service=service, instance=instance, endpoint=None)
        if endpoint:
            exporter = RedactingSpanExporter(OTLPSpanExporter())
            provider.add_span_processor(BatchSpanProcessor(exporter))
        return provider

    def server_span(self: Any, tracer: Any, name: str, parent: Any) -> Any:
        return tracer.start_span(name, context=parent, kind=SpanKind.SERVER)

    _service.build_tracer_provider = build  # type: ignore[assignment]
    TelemetryMiddleware._server_span = server_span  # type: ignore[method-assign]


def serve(kind: str, port: int) -> None:
    """Child process: serve one app on 127.0.0.1:port."""
    os.environ.update(HOST="127.0.0.1", PORT=str(port))
    if kind == "sdk_export_old":
        use_old_export_path()
    if kind.startswith("sdk"):
        from corral.sdk.serve import run

        sys.exit(run(build_sdk()))
    import uvicorn

    # The settings corral.sdk.serve.run gives uvicorn, so only the app differs.
    uvicorn.run(
        build_bare(),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
    )


# --- load generation -----------------------------------------------------------------
def wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def wrk(url: str, *, duration: int, connections: int, script: Path | None) -> dict[str, float]:
    """Run wrk (one thread, bounded duration) and return req/s, p50 and p99 in ms."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, url: str, **kw: Any) -> dict[str, float]:
    """wrk against ``url`` plus the server's CPU microseconds per request."""
    before = cpu_seconds(pid)
    result = wrk(url, **kw)
    used = cpu_seconds(pid) - before
    result["cpu_us_per_req"] = round(used / result["requests"] * 1e6, 1) if used else 0.0
    return result


def bench_server(
    kind: str,
    *,
    duration: int,
    connections: int,
    post_script: Path,
    cmd: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, dict[str, float]]:
    port = free_port()
    argv = cmd or [sys.executable, str(Path(__file__).resolve()), "serve", kind, str(port)]
    argv = [a.replace("{port}", str(port)) for a in argv]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=HERE.parent,
        env={**os.environ, **(env or {})},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/readyz")
        wrk(base + "/hello/warmup", duration=1, connections=connections, script=None)
        return {
            "hello": measured(
                proc.pid,
                base + "/hello/ada",
                duration=duration,
                connections=connections,
                script=None,
            ),
            "echo": measured(
                proc.pid,
                base + "/echo",
                duration=duration,
                connections=connections,
                script=post_script,
            ),
        }
    finally:
        proc.terminate()
        proc.wait(30)


def post_script(directory: Path) -> Path:
    script = directory / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(ECHO_BODY)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return script


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_generator": "wrk 1 thread, separate process, 127.0.0.1",
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--output",
        default="sdk_overhead.json",
        help="Result file under bench/results (export runs: sdk_export.json).",
    )
    parser.add_argument(
        "--export",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Also measure span export (new path and old path) to the OTLP receiver.",
    )
    parser.add_argument(
        "--sampled",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Also measure export sampled at 10%% (new path).",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    kinds = ["bare", "sdk"]
    if args.export:
        kinds += ["sdk_export_old", "sdk_export"] + (["sdk_sampled"] if args.sampled else [])
    load_before = round(os.getloadavg()[0], 2)
    runs: dict[str, list[dict[str, dict[str, float]]]] = {kind: [] for kind in kinds}
    receiver: subprocess.Popen[bytes] | None = None
    receiver_port = free_port()
    receiver_cpu: dict[str, list[float]] = {"sdk_export": [], "sdk_export_old": []}
    envs: dict[str, dict[str, str]] = {
        "sdk_export": export_env(receiver_port, ratio=None),
        "sdk_export_old": export_env(receiver_port, ratio=None),
        "sdk_sampled": export_env(receiver_port, ratio=0.1),
    }
    if args.export:
        receiver = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "receiver", str(receiver_port)],
            cwd=HERE.parent,
        )
        wait_ready(f"http://127.0.0.1:{receiver_port}/docs")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = post_script(Path(tmp))
            for r in range(args.rounds):
                # Alternate the order so drift (thermal, neighbours) does not favour a side.
                for kind in kinds if r % 2 == 0 else kinds[::-1]:
                    before = cpu_seconds(receiver.pid) if receiver else 0.0
                    result = bench_server(
                        kind,
                        duration=args.duration,
                        connections=args.connections,
                        post_script=script,
                        env=envs.get(kind),
                    )
                    if receiver is not None and kind in receiver_cpu:
                        served = sum(x["requests"] for x in result.values())
                        used = cpu_seconds(receiver.pid) - before
                        receiver_cpu[kind].append(round(used / served * 1e6, 1))
                    runs[kind].append(result)
                    print(kind, json.dumps(result), flush=True)
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait(30)
    summary: dict[str, Any] = {}
    for endpoint in ("hello", "echo"):
        row: dict[str, Any] = {}
        for kind in ("bare", "sdk"):
            row[kind] = {
                key: round(statistics.median(x[endpoint][key] for x in runs[kind]), 2)
                for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")
            }
        pairs = list(zip(runs["bare"], runs["sdk"], strict=True))
        rps_ratios = [s[endpoint]["rps"] / b[endpoint]["rps"] for b, s in pairs]
        row["throughput_ratio_sdk_vs_bare"] = round(statistics.median(rps_ratios), 3)
        row["throughput_ratio_per_round"] = [round(r, 3) for r in rps_ratios]
        if all(b[endpoint]["cpu_us_per_req"] and s[endpoint]["cpu_us_per_req"] for b, s in pairs):
            # Requests per CPU-second, SDK vs bare: the throughput ratio if each had a core.
            row["cpu_efficiency_ratio_sdk_vs_bare"] = round(
                statistics.median(
                    b[endpoint]["cpu_us_per_req"] / s[endpoint]["cpu_us_per_req"] for b, s in pairs
                ),
                3,
            )
        row["goal"] = 0.85
        if args.export:
            row["goal_cpu_per_req_ratio_export_vs_sdk"] = 1.2
        for kind in kinds[2:]:
            row[kind] = {
                key: round(statistics.median(x[endpoint][key] for x in runs[kind]), 2)
                for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")
            }
            versus = list(zip(runs["sdk"], runs[kind], strict=True))
            row[f"throughput_ratio_{kind}_vs_sdk"] = round(
                statistics.median(e[endpoint]["rps"] / b[endpoint]["rps"] for b, e in versus), 3
            )
            row[f"cpu_per_req_ratio_{kind}_vs_sdk"] = round(
                statistics.median(
                    e[endpoint]["cpu_us_per_req"] / b[endpoint]["cpu_us_per_req"]
                    for b, e in versus
                    if b[endpoint]["cpu_us_per_req"]
                ),
                3,
            )
        summary[endpoint] = row
    for kind, values in receiver_cpu.items():
        if values:
            summary[f"receiver_cpu_us_per_exported_request_{kind}"] = statistics.median(values)
    report = {
        "what": "corral.sdk (metrics, JSON logs to stdout->/dev/null, tracing spans, request id) "
        "vs bare FastAPI, same handlers, uvicorn+uvloop+httptools, access log off",
        "commit": git_commit(),
        "config": vars(args),
        "machine": {**machine(), "load_average_1m_before": load_before},
        "results": summary,
        "rounds": runs,
    }
    write_result(args.output, report)
    print(json.dumps(summary, indent=2))


def granian_app() -> Any:
    """Factory for bench/server_choice.py: the SDK app with settings and telemetry loaded."""
    svc = build_sdk()
    svc.load_settings()
    svc.configure_telemetry()
    return svc.app


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "receiver":
        serve_receiver(int(sys.argv[2]))
    else:
        main()
