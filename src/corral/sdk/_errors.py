"""Errors as RFC 9457 ``application/problem+json``.

Every error response a service sends has this shape, whatever raised it::

    Exception
     +-- Problem                 raised by handlers: status, title, detail, type, extensions
    starlette HTTPException      404/405 from routing, raised by users -> same shape
    RequestValidationError       422 with an ``errors`` list (loc, detail, type)
    any other exception          500, generic detail; logged with trace id by the middleware
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["PROBLEM_JSON", "Problem", "install_error_handlers", "problem_body", "problem_response"]

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise from a handler to answer with a problem+json response.

    ``raise Problem(409, "illegal transition", detail="ride 7 is already finished",
    type="https://errors.example.com/ride-state", ride_id=7)``; extra keywords become
    extension members of the body.
    """

    def __init__(
        self,
        status: int,
        title: str | None = None,
        *,
        detail: str | None = None,
        type: str = "about:blank",
        instance: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        self.status = status
        self.title = title or _phrase(status)
        self.detail = detail
        self.type = type
        self.instance = instance
        self.headers = headers
        self.extensions = extensions
        super().__init__(f"{status} {self.title}" + (f": {detail}" if detail else ""))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    status: int,
    title: str | None = None,
    *,
    detail: str | None = None,
    type: str = "about:blank",
    instance: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": type,
        "title": title or _phrase(status),
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update(extensions)
    return body


def problem_response(
    status: int,
    title: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **fields: Any,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, title, **fields),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def _instance(request: Request) -> str:
    return request.url.path


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(
        exc.status,
        exc.title,
        headers=exc.headers,
        detail=exc.detail,
        type=exc.type,
        instance=exc.instance or _instance(request),
        **exc.extensions,
    )


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail: Any = exc.detail
    title = _phrase(exc.status_code)
    fields: dict[str, Any] = {"instance": _instance(request)}
    if isinstance(detail, str):
        if detail != title:
            fields["detail"] = detail
    elif detail is not None:
        # Users sometimes pass a dict or list; keep it as an extension, not a string.
        fields["errors"] = detail
    return problem_response(exc.status_code, title, headers=exc.headers, **fields)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "detail": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    where = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors)
    detail = f"invalid: {where}" if where else None
    for raw, error in zip(exc.errors(), errors, strict=True):
        if error["type"] == "json_invalid":
            # FastAPI's loc is ("body", <character offset>) and its msg "JSON decode
            # error": say what json.loads said, where ("invalid: body.1" said nothing).
            reason = (raw.get("ctx") or {}).get("error") or "not valid JSON"
            at = error["loc"][-1] if len(error["loc"]) > 1 else None
            error["detail"] = f"{reason} (at character {at})" if at is not None else reason
            detail = f"the request body is not valid JSON: {error['detail']}"
    return problem_response(
        422,
        "Request validation failed",
        detail=detail,
        instance=_instance(request),
        errors=errors,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every error response problem+json (the 500 path lives in the middleware)."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
