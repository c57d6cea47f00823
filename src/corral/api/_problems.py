"""RFC 9457 problem+json answers for the control-plane API.

``ApiProblem`` is imported by the client side too (``corral.api``'s package): FastAPI is
imported only by what answers problems, so a command that calls the API never loads it
(about a third of ``corral status``'s start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral.chaos import ChaosError, Refusal
from corral.runtime.errors import (
    CorralRuntimeError,
    NotRunningError,
    StartError,
    UnknownInstanceError,
    UnknownServiceError,
)

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"


class ApiProblem(Exception):
    """Raised by handlers; answered as problem+json."""

    def __init__(self, status: int, title: str, detail: str | None = None) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> JSONResponse:
    from fastapi.responses import JSONResponse

    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


_CHAOS_STATUS = {Refusal.CONFLICT: 409, Refusal.INVALID: 422, Refusal.UNKNOWN: 404}


def install(app: FastAPI) -> None:
    """Answer every error the API can produce as problem+json."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(ApiProblem)
    async def _api_problem(_: Request, exc: ApiProblem) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail)

    @app.exception_handler(ChaosError)
    async def _chaos(_: Request, exc: ChaosError) -> JSONResponse:
        return problem(_CHAOS_STATUS[exc.refusal], exc.title, exc.detail)

    @app.exception_handler(CorralRuntimeError)
    async def _runtime(_: Request, exc: CorralRuntimeError) -> JSONResponse:
        # An operation the runtime refused or could not finish (new instances that never
        # became ready, a system on its way down): the reason, with the instance's last
        # log lines, is what the operator needs, not a bare 500.
        if isinstance(exc, StartError):
            return problem(503, "instances did not become ready", exc.details())
        if isinstance(exc, UnknownServiceError):
            return problem(404, "unknown service", str(exc))
        if isinstance(exc, UnknownInstanceError):
            return problem(404, "unknown instance", str(exc))
        if isinstance(exc, NotRunningError):
            return problem(409, "the system is not running", str(exc))
        return problem(409, "refused by the runtime", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        response = problem(exc.status_code, str(exc.detail))
        response.headers.update(headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return problem(422, "invalid request", "the request did not validate", errors=errors)
