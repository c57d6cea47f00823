"""Per-request context shared by the middleware, the log processors and outgoing calls."""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["current_request_id", "request_id_var"]

request_id_var: ContextVar[str | None] = ContextVar("corral_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled by this task, if any."""
    return request_id_var.get()
