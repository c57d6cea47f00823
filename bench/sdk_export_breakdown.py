"""Where span export's CPU goes, per request, in one process (issue 15, item 4: measure
before fixing), for the path the SDK used before (``old``) and the one it uses now
(``new``). The same "request" (a server span with three HTTP attributes, a client span
inside it, an event) is made N times with, for each path:

- ``record``: spans made, no processor. Old: the SDK tracer's server span. New: the
  middleware's lean server span (corral.sdk._span_server); the client span is the
  SDK's in both;
- ``queue_noop``: plus the span processor handing batches to an exporter that drops
  them (old: the SDK's ``BatchSpanProcessor``; new: corral.sdk._span_export's
  ``QueueSpanProcessor`` queueing the span objects, as it does for exporters other than
  its own);
- ``queue_encode``: spans encoded to OTLP protobuf bytes and dropped (old: the official
  encoder in the batch thread; new: ``QueueSpanProcessor`` encoding each span as it ends,
  with corral.sdk._otlp_encode, and queueing the bytes, as it does in services);
- ``queue_http``: the real OTLP/HTTP exporter (old: ``OTLPSpanExporter`` behind the
  redacting exporter; new: ``LeanOTLPSpanExporter``, which redacts as it encodes)
  posting to a local HTTP server that answers 200 (the whole path under ``corral up``,
  minus the receiver's own work), with three secrets registered, as under ``corral up``.

CPU is this process's (``time.process_time``, every thread), after ``force_flush``, so
the background thread's work is counted; the server runs in another process.

    uv run python bench/sdk_export_breakdown.py [--requests 15000]
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
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from corral.sdk._secrets import register_secrets
from corral.sdk._span_export import LeanOTLPSpanExporter, QueueSpanProcessor
from corral.sdk._span_redaction import RedactingSpanExporter
from corral.sdk._span_server import ServerSpans

_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the control plane's receiver (uvicorn)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class _Drop(SpanExporter):
    def __init__(self, encode: Any = None) -> None:
        self.encode = encode

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.encode is not None:
            self.encode(spans)
        return SpanExportResult.SUCCESS


def _official(spans: Sequence[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def _requests(provider: TracerProvider, count: int, *, lean: bool) -> float:
    tracer = provider.get_tracer("corral.sdk")
    factory = ServerSpans(tracer) if lean else None  # type: ignore[arg-type]
    start = time.process_time()
    for i in range(count):
        if factory is not None:  # as the middleware does it
            server = factory.start("GET", None)
        else:
            server = tracer.start_span("GET", kind=SpanKind.SERVER)
        token = otel_context.attach(trace.set_span_in_context(server))
        with tracer.start_as_current_span(
            "GET matching", kind=SpanKind.CLIENT, attributes={"corral.target": "matching"}
        ):
            pass
        server.add_event("retry", {"attempt": i % 3})
        otel_context.detach(token)
        if factory is not None:
            server.finish("GET /rides/{id}", "GET", "/rides/{id}", 200)  # type: ignore[attr-defined]
        else:
            server.update_name("GET /rides/{id}")
            server.set_attribute("http.request.method", "GET")
            server.set_attribute("http.route", "/rides/{id}")
            server.set_attribute("http.response.status_code", 200)
            server.end()
    provider.force_flush(60_000)
    return time.process_time() - start


def _provider(processor: SpanProcessor | None) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    if processor is not None:
        provider.add_span_processor(processor)
    return provider


def _old(exporter: SpanExporter) -> SpanProcessor:
    # A queue that never fills: the SDK's default (2048) drops spans when a burst
    # outruns the export thread, which would count as less work here.
    return BatchSpanProcessor(exporter, max_queue_size=1 << 20)


def _new(exporter: SpanExporter) -> SpanProcessor:
    return QueueSpanProcessor(exporter, max_queue_size=1 << 20)


class _LeanDrop(LeanOTLPSpanExporter):
    """The lean exporter, its requests assembled and dropped instead of posted."""

    def _post(self, data: bytes, count: int) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=15_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    load_before = round(os.getloadavg()[0], 2)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)])
    try:
        time.sleep(0.5)
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Three secrets, as under corral up (discovery and config tokens, a password).
        register_secrets(["bench-secret-one", "bench-secret-two", "bench-secret-three"])
        variants: dict[str, Any] = {
            "old.record": lambda: None,
            "old.queue_noop": lambda: _old(_Drop()),
            "old.queue_encode": lambda: _old(_Drop(_official)),
            "old.queue_http": lambda: _old(RedactingSpanExporter(OTLPSpanExporter())),
            "new.record": lambda: None,
            "new.queue_noop": lambda: _new(_Drop()),
            "new.queue_encode": lambda: _new(_LeanDrop()),
            "new.queue_http": lambda: _new(LeanOTLPSpanExporter()),
        }
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):  # interleaved rounds: the machine's load drifts
            for name, make in variants.items():
                provider = _provider(make())
                used = _requests(provider, args.requests, lean=name.startswith("new"))
                cpu[name].append(used / args.requests * 1e6)
                provider.shutdown()
    finally:
        server.terminate()
        server.wait()
    best = {name: round(min(values), 1) for name, values in cpu.items()}

    def stages(path: str) -> dict[str, float]:
        return {
            "span_objects": best[f"{path}.record"],
            "processor_queueing_spans": round(
                best[f"{path}.queue_noop"] - best[f"{path}.record"], 1
            ),
            "processor_and_encoding_as_used": round(
                best[f"{path}.queue_encode"] - best[f"{path}.record"], 1
            ),
            "http_post_and_old_redaction": round(
                best[f"{path}.queue_http"] - best[f"{path}.queue_encode"], 1
            ),
        }

    out = {
        "what": "CPU microseconds per request of 2 spans and 1 event, by export stage, "
        f"old path vs new (best of {args.rounds} interleaved rounds; this process, every "
        "thread)",
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1m_before": load_before,
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "requests": args.requests,
        "cpu_us_per_request": best,
        "added_by_stage_us": {"old": stages("old"), "new": stages("new")},
        "export_total_ratio_new_vs_old": round(best["new.queue_http"] / best["old.queue_http"], 3),
    }
    path = write_result("sdk_export_breakdown.json", out)
    print(path.read_text())


if __name__ == "__main__":
    main()
