"""The gate in front of every route (api/_gate.py), driven as ASGI with a receive that
counts what the app asked for: credentials are checked before a byte of body is read,
and no route reads more body than its limit, with or without content-length."""

from __future__ import annotations

from typing import Any

import pytest
from test_app import ADMIN, DISCOVERY, FakeTarget

from corral.api import create_app
from corral.api._gate import DEFAULT_MAX_BODY

CHUNK = 64 * 1024
INGEST = "ingest-token"


class Telemetry:
    """Enough of a TelemetrySource for the receiver route."""

    ingest_token = INGEST

    def ingest(self, body: bytes, *, content_type: str | None, encoding: str | None) -> bytes:
        return b""


MUCH = 32 * 1024 * 1024
"""More than any route takes (a finite "for ever", so old code fails instead of hanging)."""


class Body:
    """A client sending ``total`` bytes in chunks; counts what the app read."""

    def __init__(self, total: int = MUCH) -> None:
        self.total = total
        self.read = 0

    async def receive(self) -> dict[str, Any]:
        size = min(CHUNK, self.total - self.read)
        self.read += size
        more = self.read < self.total
        return {"type": "http.request", "body": b"x" * size, "more_body": more}


def scope(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 5000),
    }


async def call(
    app: Any, method: str, path: str, body: Body, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope(method, path, headers), body.receive, send)
    start = sent[0]
    answer = {k.decode(): v.decode() for k, v in start["headers"]}
    content = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], answer, content


@pytest.fixture
def target() -> FakeTarget:
    return FakeTarget()


@pytest.fixture
def app(target: FakeTarget) -> Any:
    async def shutdown() -> None:
        return None

    return create_app(
        target,
        admin_token=ADMIN,
        discovery_token=DISCOVERY,
        request_shutdown=shutdown,
        telemetry=Telemetry(),  # type: ignore[arg-type]
    )


CHUNKED = {"transfer-encoding": "chunked", "content-type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", "/v1/services/web/scale", {}),
        ("POST", "/v1/services/web/scale", {"authorization": f"Bearer {DISCOVERY}"}),
        ("POST", "/v1/no/such/route", {}),  # closed by default
        ("POST", "/otlp/v1/traces", {"authorization": f"Bearer {ADMIN}"}),
        ("POST", "/v1/dashboard/session", {}),  # not the dashboard's own page
        ("DELETE", "/v1/dashboard/session", {"origin": "http://evil.example"}),
    ],
)
async def test_no_body_is_read_before_the_caller_is_known(
    app: Any, method: str, path: str, headers: dict[str, str]
) -> None:
    """Without the route's credentials, a large body is not read at all: the answer is
    a 401 (403 for the dashboard's login) problem, and the connection closes."""
    body = Body()
    status, answer, content = await call(app, method, path, body, {**CHUNKED, **headers})
    assert status in (401, 403)
    assert answer["content-type"] == "application/problem+json"
    assert answer["connection"] == "close"
    assert body.read == 0
    assert b'"status"' in content


@pytest.mark.parametrize(
    ("path", "headers", "limit"),
    [
        ("/v1/services/web/scale", {"authorization": f"Bearer {ADMIN}"}, DEFAULT_MAX_BODY),
        ("/otlp/v1/traces", {"authorization": f"Bearer {INGEST}"}, 16 * 1024 * 1024),
        (
            "/v1/dashboard/session",
            {"origin": "http://127.0.0.1:5000", "host": "127.0.0.1:5000"},
            4096,
        ),
    ],
)
async def test_a_chunked_body_is_read_only_up_to_the_route_limit(
    app: Any, path: str, headers: dict[str, str], limit: int
) -> None:
    """With the right credentials and no content-length, the body is read until it
    passes the route's limit, then 413 problem+json and the connection closes."""
    body = Body()
    status, answer, _ = await call(app, "POST", path, body, {**CHUNKED, **headers})
    assert status == 413
    assert answer["content-type"] == "application/problem+json"
    assert answer["connection"] == "close"
    assert limit < body.read <= limit + CHUNK


async def test_a_declared_length_over_the_limit_is_refused_unread(app: Any) -> None:
    """A content-length over the limit is refused before reading."""
    body = Body(10 * DEFAULT_MAX_BODY)
    headers = {
        "authorization": f"Bearer {ADMIN}",
        "content-length": str(10 * DEFAULT_MAX_BODY),
        "content-type": "application/json",
    }
    status, _, _ = await call(app, "POST", "/v1/services/web/scale", body, headers)
    assert status == 413
    assert body.read == 0


async def test_a_body_within_the_limit_reaches_the_route(app: Any, target: FakeTarget) -> None:
    """The app gets the whole body, replayed: a chunked scale works as before."""
    payload = b'{"replicas": 3}'

    class Small(Body):
        async def receive(self) -> dict[str, Any]:
            self.read += len(payload)
            return {"type": "http.request", "body": payload, "more_body": False}

    headers = {**CHUNKED, "authorization": f"Bearer {ADMIN}"}
    status, _, content = await call(app, "POST", "/v1/services/web/scale", Small(), headers)
    assert status == 200, content
    assert target.calls[-1] == ("scale", "web", "3")


@pytest.mark.parametrize("path", ["/openapi.json", "/dashboard/", "/dashboard/static/app.js"])
async def test_public_documents_need_no_token_but_take_no_body(app: Any, path: str) -> None:
    """The page, its assets and the OpenAPI document are public, and bodiless."""
    status, _, _ = await call(app, "GET", path, Body(0), {})
    assert status == 200
    status, _, _ = await call(app, "GET", path, Body(), CHUNKED)
    assert status == 413


async def test_websocket_handshakes_are_refused(app: Any) -> None:
    """No route is a WebSocket: a handshake is closed, whatever its path or token."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    handshake = {**scope("GET", "/v1/registry/watch", {}), "type": "websocket"}
    await app(handshake, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
