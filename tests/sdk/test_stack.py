"""The app's stack: telemetry outermost, in place of ServerErrorMiddleware, then identity;
route order."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from corral import contract
from corral.sdk import PROBLEM_JSON, Service
from corral.sdk._middleware import TelemetryMiddleware
from corral.sdk.identity._middleware import IdentityMiddleware
from corral.sdk.testing import capture_logs, serve_in_process


class Crash(Exception):
    pass


def make_service() -> Service:
    svc = Service("stacked")

    @svc.get("/ok")
    async def ok() -> dict[str, str]:
        return {"ok": "yes"}

    @svc.get("/crash")
    async def crash() -> None:
        raise Crash("boom")

    @svc.get("/value")
    async def value() -> None:
        raise ValueError("bad value")

    @svc.get("/teapot")
    async def teapot() -> None:
        raise StarletteHTTPException(418, detail="short and stout")

    return svc


def layers(app: ASGIApp) -> list[type]:
    """The classes of the middleware chain, outermost first, down to the router."""
    found: list[type] = []
    while app is not None:
        found.append(type(app))
        app = getattr(app, "app", None)
    return found


class Guard:
    """A user's pure-ASGI middleware: fails on /guard-crash, answers /guard-deny itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/guard-crash":
            raise RuntimeError("guard broke")
        if scope["type"] == "http" and scope["path"] == "/guard-deny":
            await JSONResponse({"denied": True}, status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def test_telemetry_is_outermost_and_server_errors_layer_is_gone() -> None:
    """Without a 500 handler the stack starts with telemetry and has no ServerErrorMiddleware."""
    svc = make_service()
    svc.app.add_middleware(Guard)
    chain = layers(svc.app.build_middleware_stack())
    assert chain[:2] == [TelemetryMiddleware, IdentityMiddleware]
    assert ServerErrorMiddleware not in chain
    assert chain.index(Guard) > 1  # the users' middleware runs inside telemetry and identity


def test_a_500_handler_keeps_server_error_middleware() -> None:
    """A handler for Exception (or debug mode) needs ServerErrorMiddleware: it stays, inside."""
    svc = make_service()
    svc.exception_handler(Exception)(lambda request, exc: JSONResponse({}, status_code=500))
    chain = layers(svc.app.build_middleware_stack())
    assert chain[:3] == [TelemetryMiddleware, IdentityMiddleware, ServerErrorMiddleware]
    debug = Service("debugging", debug=True)
    assert ServerErrorMiddleware in layers(debug.app.build_middleware_stack())


async def test_users_exception_handlers_still_answer() -> None:
    """Handlers for an exception class and for HTTPException replace the SDK's answers."""
    svc = make_service()

    @svc.exception_handler(ValueError)
    async def on_value(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"mine": str(exc)}, status_code=400)

    @svc.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse({"http": exc.detail}, status_code=exc.status_code)

    with capture_logs() as logs:
        async with serve_in_process(svc) as client:
            value = await client.get("/value")
            teapot = await client.get("/teapot")
            missing = await client.get("/missing")
    assert (value.status_code, value.json()) == (400, {"mine": "bad value"})
    assert (teapot.status_code, teapot.json()) == (418, {"http": "short and stout"})
    assert (missing.status_code, missing.json()) == (404, {"http": "Not Found"})
    statuses = [line["status"] for line in logs if line.get("event") == "request"]
    assert statuses == [400, 418, 404]
    assert not [line for line in logs if line.get("event") == "unhandled exception"]


async def test_a_users_500_handler_answers_and_the_crash_is_logged() -> None:
    """With a handler for Exception, its response is sent; the SDK still logs the crash."""
    svc = make_service()

    @svc.exception_handler(Exception)
    async def on_any(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"sorry": type(exc).__name__}, status_code=503)

    with capture_logs() as logs:
        async with serve_in_process(svc) as client:
            response = await client.get("/crash")
    assert (response.status_code, response.json()) == (503, {"sorry": "Crash"})
    assert response.headers["x-request-id"]
    [error] = [line for line in logs if line.get("event") == "unhandled exception"]
    [access] = [line for line in logs if line.get("event") == "request"]
    assert error["request_id"] == access["request_id"] == response.headers["x-request-id"]
    assert access["status"] == 503  # what the client got; the error line tells the crash


async def test_users_middleware_is_inside_telemetry() -> None:
    """A user's middleware that fails answers problem+json 500; one that answers is logged."""
    svc = make_service()
    svc.app.add_middleware(Guard)
    with capture_logs() as logs:
        async with serve_in_process(svc) as client:
            crashed = await client.get("/guard-crash")
            denied = await client.get("/guard-deny")
    assert crashed.status_code == 500
    assert crashed.headers["content-type"] == PROBLEM_JSON
    assert denied.status_code == 401
    assert denied.headers["x-request-id"]
    access = {line["path"]: line for line in logs if line.get("event") == "request"}
    assert access["/guard-crash"]["status"] == 500
    assert access["/guard-deny"]["status"] == 401
    [error] = [line for line in logs if line.get("event") == "unhandled exception"]
    assert error["request_id"] == crashed.headers["x-request-id"]


async def test_a_failing_probe_answers_problem_500() -> None:
    """Probes skip telemetry but not the 500 path: a crash there is problem+json and logged."""
    svc = make_service()

    async def broken() -> Any:
        raise RuntimeError("readiness broke")

    svc.health.readiness = broken  # type: ignore[method-assign]
    with capture_logs() as logs:
        async with serve_in_process(svc) as client:
            response = await client.get(contract.READINESS_PATH)
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["instance"] == contract.READINESS_PATH
    [error] = [line for line in logs if line.get("event") == "unhandled exception"]
    assert "readiness broke" in error["exception"]


async def test_builtin_and_docs_routes_are_tried_last_but_still_served() -> None:
    """The service's routes come first; health, metrics and the docs pages still answer."""
    svc = make_service()
    async with serve_in_process(svc) as client:
        paths = [getattr(route, "path", None) for route in svc.app.router.routes]
        assert paths[:4] == ["/ok", "/crash", "/value", "/teapot"]
        assert {"/docs", "/redoc", "/openapi.json", contract.METRICS_PATH} <= set(paths[4:])
        for path in ("/docs", "/redoc", "/openapi.json", contract.LIVENESS_PATH):
            assert (await client.get(path)).status_code == 200, path


async def test_a_route_matching_a_builtin_path_keeps_the_order() -> None:
    """When a route of the service would match a built-in path, nothing moves."""
    svc = make_service()

    @svc.get("/{page}")
    async def page(page: str) -> dict[str, str]:
        return {"page": page}

    before = list(svc.app.router.routes)
    async with serve_in_process(svc) as client:
        assert svc.app.router.routes == before
        assert (await client.get("/docs")).headers["content-type"].startswith("text/html")


async def test_a_crash_answered_inside_users_middleware_keeps_their_headers() -> None:
    """The problem+json 500 of a crashing handler passes through the users' middleware:
    CORS headers are on it (a browser can read it), and a middleware using call_next
    gets a response, not an exception; the crash is logged once, with the request id."""
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.middleware.cors import CORSMiddleware

    svc = make_service()

    async def stamp(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-stamped"] = "yes"
        return response

    svc.app.add_middleware(BaseHTTPMiddleware, dispatch=stamp)
    svc.app.add_middleware(CORSMiddleware, allow_origins=["https://app.test"])
    with capture_logs() as logs:
        async with serve_in_process(svc) as client:
            response = await client.get("/crash", headers={"origin": "https://app.test"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["access-control-allow-origin"] == "https://app.test"
    assert response.headers["x-stamped"] == "yes"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    [error] = [line for line in logs if line.get("event") == "unhandled exception"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Crash: boom" in error["exception"]
    [access] = [line for line in logs if line.get("event") == "request"]
    assert access["status"] == 500
