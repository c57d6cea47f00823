"""The gate every request passes: who may call the route, then how much body it may send.

FastAPI reads and parses a request's body *before* its dependencies run, so a token
dependency alone let anyone make the control plane read, and hold, any body (a 500 MB
chunked POST with no token took it from 310 MB to 1.3 GB resident). :class:`Gate` is
pure ASGI middleware in front of every route instead of a discipline each endpoint must
keep:

1. it finds the :class:`Rule` of the request's path (rules are keyed by route path
   template); a path nobody gave a rule is admin-only, so a new endpoint is closed
   until someone opens it;
2. it checks the credentials from the headers alone (401 problem+json, before a single
   byte of body is read; uvicorn sends no ``100 Continue`` either);
3. it refuses a declared ``content-length`` over the rule's limit (413), then reads the
   body, chunked or not, only up to that limit: one byte more and the answer is 413. The
   app gets the body replayed; it never sees a partial one.

A refusal that leaves body unread carries ``connection: close``, so uvicorn closes the
connection instead of reading on and discarding whatever the client keeps sending.

Starlette's ``RequestBodyLimitMiddleware`` (behind FastAPI's ``max_body_size``) counts
the body while the endpoint reads it, answers its 413 in plain text from inside the
route and leaves the connection open to more of the body; it cannot run before the
credentials are known either. So the reading is written here: a few lines of ASGI.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from starlette.convertors import Convertor
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.api._problems import problem

__all__ = [
    "DEFAULT_MAX_BODY",
    "Access",
    "Gate",
    "Rule",
    "Verifier",
    "bearer_token",
    "token_is",
]

DEFAULT_MAX_BODY = 64 * 1024
"""Bytes of body a route takes unless its rule says otherwise (JSON commands are small)."""


class Access(StrEnum):
    """Who may call a route; each has one :data:`Verifier` (see ``create_app``)."""

    PUBLIC = "public"
    """Anyone: the dashboard page and its assets, the OpenAPI document."""
    ADMIN = "admin"
    """The admin token (or a dashboard session standing in for it)."""
    READER = "reader"
    """The admin or the discovery token: registry reads."""
    INGEST = "ingest"
    """The OTLP ingest token instances export spans with."""
    INSTANCE = "instance"
    """A service's configuration token, for an instance of that service (path ``instance``)."""
    DASHBOARD = "dashboard"
    """No token: the dashboard's own page (loopback Host, same origin), for its login."""


@dataclass(frozen=True)
class Rule:
    access: Access = Access.ADMIN
    max_body: int = DEFAULT_MAX_BODY
    """Bytes of request body the route may receive."""


Verifier = Callable[[Scope, str | None, Mapping[str, Any]], bool]
"""(request scope, bearer token or None, path parameters) -> allowed."""


def bearer_token(scope: Scope) -> str | None:
    """The bearer token of the Authorization header, as text (latin-1, as sent)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def token_is(given: str | None, *expected: str) -> bool:
    """Whether ``given`` is one of ``expected``, in constant time per candidate."""
    if given is None:
        return False
    # Bytes, not str: compare_digest raises TypeError on non-ASCII text, and a header
    # may carry any latin-1 character.
    raw = given.encode("utf-8", "surrogateescape")
    return any(secrets.compare_digest(raw, token.encode()) for token in expected)


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    """The client disconnected while sending its body."""


class Gate:
    """Pure ASGI middleware: authenticate, then read the body up to the route's limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: Mapping[str, Rule],
        verifiers: Mapping[Access, Verifier],
    ) -> None:
        """``rules``: by path template, as routes write them
        (``/v1/config/instances/{instance}/watch``, ``/dashboard/static/{path:path}``);
        ``verifiers``: one per kind of access the rules use."""
        self.app = app
        self._rules: list[tuple[re.Pattern[str], dict[str, Convertor[Any]], Rule]] = []
        for template, rule in rules.items():
            pattern, _, convertors = compile_path(template)
            self._rules.append((pattern, convertors, rule))
        self._verifiers = dict(verifiers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # The API has no WebSocket route: a handshake is refused, never passed on.
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        rule, params = self._rule(scope)
        pending = _has_body(scope)
        verify = self._verifiers.get(rule.access)
        token = bearer_token(scope)
        if verify is None or not verify(scope, token, params):
            if rule.access is Access.DASHBOARD:
                refusal = problem(
                    403, "not the dashboard", "open the dashboard on the API's address"
                )
            else:
                title = "missing bearer token" if token is None else "invalid bearer token"
                refusal = problem(401, title)
                refusal.headers["www-authenticate"] = "Bearer"
            await _refuse(refusal, scope, receive, send, close=pending)
            return
        declared = _content_length(scope)
        too_large = problem(413, "request body too large", f"at most {rule.max_body} bytes")
        if declared is not None and declared > rule.max_body:
            await _refuse(too_large, scope, receive, send, close=True)
            return
        try:
            body = await _read(receive, rule.max_body) if pending else b""
        except _TooLarge:
            await _refuse(too_large, scope, receive, send, close=True)
            return
        except _Gone:
            return
        await self.app(scope, _replay(body, receive, pending), send)

    def _rule(self, scope: Scope) -> tuple[Rule, Mapping[str, Any]]:
        """The rule of the request's path (whatever the method: a wrong one is refused
        the same way before it gets its 405) and the path's parameters."""
        path = scope["path"]
        for pattern, convertors, rule in self._rules:
            found = pattern.match(path)
            if found is not None:
                params = {
                    name: convertors[name].convert(value)
                    for name, value in found.groupdict().items()
                }
                return rule, params
        return Rule(), {}


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            return True
        if lowered == b"content-length":
            return value.strip() not in (b"", b"0")
    return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() else None
    return None


async def _read(receive: Receive, limit: int) -> bytes:
    """The whole body, or _TooLarge as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive, pending: bool) -> Receive:
    """A receive that hands the app the body once, then the connection's own messages
    (a disconnect, which streaming endpoints wait for)."""
    first = True

    async def replay() -> Message:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    # A request without a body has its one (empty) message still unread: the app reads
    # it from the connection itself, as it would without the gate.
    return replay if pending else receive


async def _refuse(
    response: Response, scope: Scope, receive: Receive, send: Send, *, close: bool
) -> None:
    """Answer without the app; ``close``: body is left unread, so the connection ends."""
    if close:
        response.headers["connection"] = "close"
    await response(scope, receive, send)
