"""Where span export's CPU goes, per span, in one process (issue 15, item 4: measure
before fixing). The same 3-span "request" (a server span, a client span, an event) is
made N times with:

- ``record``: a TracerProvider and no processor (what the SDK does with export off);
- ``batch_noop``: plus a BatchSpanProcessor handing batches to an exporter that drops
  them (the processor's queue and thread);
- ``batch_encode``: the same exporter encoding each batch to OTLP protobuf (the
  encoder ``opentelemetry-exporter-otlp-proto-common`` uses) and dropping the bytes;
- ``batch_http``: the real ``OTLPSpanExporter`` posting to a local HTTP server that
  answers 200 (the whole path under ``corral up``, minus the receiver's own work).

CPU is this process's (``time.process_time``, every thread), after ``force_flush``, so
the background thread's work is counted; the server runs in another process.

    uv run python bench/sdk_export_breakdown.py [--spans 30000]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from _common import free_port, write_result
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class _Drop(SpanExporter):
    def __init__(self, *, encode: bool) -> None:
        self.encode = encode

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.encode:
            encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS


def _requests(provider: TracerProvider, count: int) -> float:
    tracer = provider.get_tracer("bench")
    start = time.process_time()
    for i in range(count):
        with tracer.start_as_current_span(
            "GET /rides/{id}",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "GET",
                "http.route": "/rides/{id}",
                "http.response.status_code": 200,
            },
        ) as server:
            with tracer.start_as_current_span(
                "GET matching", kind=SpanKind.CLIENT, attributes={"corral.target": "matching"}
            ):
                pass
            server.add_event("retry", {"attempt": i % 3})
    provider.force_flush(60_000)
    return time.process_time() - start


def _provider(exporter: SpanExporter | None) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    if exporter is not None:
        # A queue that never fills: the SDK's default (2048) drops spans when a burst
        # outruns the export thread, which would count as less work here.
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1 << 20))
    return provider


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=15_000)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)])
    try:
        time.sleep(0.5)
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        variants: dict[str, Any] = {
            "record": lambda: None,
            "batch_noop": lambda: _Drop(encode=False),
            "batch_encode": lambda: _Drop(encode=True),
            "batch_http": OTLPSpanExporter,
        }
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(3):  # interleaved rounds: the machine's load drifts
            for name, make in variants.items():
                provider = _provider(make())
                cpu[name].append(_requests(provider, args.requests) / args.requests * 1e6)
                provider.shutdown()
    finally:
        server.terminate()
        server.wait()
    best = {name: round(min(values), 1) for name, values in cpu.items()}
    out = {
        "what": "CPU microseconds per request of 2 spans and 1 event, by export stage "
        "(best of 3 interleaved rounds; this process, every thread)",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "requests": args.requests,
        "cpu_us_per_request": best,
        "added_by_stage_us": {
            "span_objects": best["record"],
            "batch_processor": round(best["batch_noop"] - best["record"], 1),
            "protobuf_encoding": round(best["batch_encode"] - best["batch_noop"], 1),
            "http_post": round(best["batch_http"] - best["batch_encode"], 1),
        },
    }
    path = write_result("sdk_export_breakdown.json", out)
    print(path.read_text())


if __name__ == "__main__":
    main()
