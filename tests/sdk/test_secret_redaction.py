"""Secrets the SDK knows never leave the process: not in log lines written before the
service starts, not in the spans it exports (attributes, events, status)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import trace
from sdk_helpers import APPS

from corral import contract
from corral.sdk import Service
from corral.sdk._secrets import REDACTED
from corral.sdk.testing import serve_in_process

PLANTED = "planted-0b7e5c1f9a"


class Collector:
    """A real OTLP/HTTP endpoint: keeps the raw body of every export it receives."""

    def __init__(self) -> None:
        bodies: list[bytes] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                bodies.append(self.rfile.read(length))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.bodies = bodies
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    served = Collector()
    yield served
    served.close()


async def test_exported_spans_carry_no_secret(collector: Collector) -> None:
    """A handler raising ``RuntimeError(<secret>)`` (plus an attribute and an event
    holding it): the OTLP export holds the span, its exception event and stack trace,
    with the secret replaced."""
    svc = Service("leaky-spans")

    @svc.get("/boom")
    async def boom() -> None:
        span = trace.get_current_span()
        span.set_attribute("note", f"key={PLANTED}")
        span.set_attribute("notes", ["plain", PLANTED])
        span.add_event("looked up", {"value": PLANTED})
        raise RuntimeError(f"the key {PLANTED} was refused")

    env = {
        contract.OTEL_ENDPOINT: collector.url,
        contract.SECRET_VARIABLES: "PLANTED_KEY",
        "PLANTED_KEY": PLANTED,
    }
    async with serve_in_process(svc, env=env) as client:
        assert (await client.get("/boom")).status_code == 500
    # stop() flushed the batch
    exported = b"".join(collector.bodies)
    assert b"exception.stacktrace" in exported
    assert b"looked up" in exported
    assert PLANTED.encode() not in exported
    assert f"the key {REDACTED} was refused".encode() in exported


def test_log_lines_at_import_time_are_redacted(serve_process: Any) -> None:
    """``svc.log`` and ``get_logger()`` lines written while the module is imported,
    before the service starts, are JSON lines with the secret redacted."""
    served = serve_process(
        "import_time_log:svc",
        cwd=APPS,
        env={contract.SECRET_VARIABLES: "PLANTED_KEY", "PLANTED_KEY": PLANTED},
    )
    served.wait_ready()
    out = served.output()
    assert "module loading" in out
    assert "configured with" in out
    assert PLANTED not in out
    assert out.count(REDACTED) >= 2


def test_a_span_without_secrets_is_exported_as_it_is() -> None:
    """Redaction copies only spans that hold a secret; the others go out untouched."""
    from opentelemetry.sdk.trace import TracerProvider

    from corral.sdk._secrets import register_secrets
    from corral.sdk._span_redaction import redact_span

    register_secrets([PLANTED])
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("clean", attributes={"n": 1, "s": "fine"}) as clean:
        clean.add_event("nothing", {"v": "plain"})
    with tracer.start_as_current_span(f"dirty {PLANTED}") as dirty:
        dirty.set_status(trace.Status(trace.StatusCode.ERROR, f"failed: {PLANTED}"))
    assert redact_span(clean) is clean  # type: ignore[arg-type]
    copied = redact_span(dirty)  # type: ignore[arg-type]
    assert copied.name == f"dirty {REDACTED}"
    assert copied.status.description == f"failed: {REDACTED}"
    assert copied.context == dirty.get_span_context()
