"""Per-request context shared by the middleware, the log processors and outgoing calls."""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["bearer_token_var", "current_request_id", "request_id_var"]

request_id_var: ContextVar[str | None] = ContextVar("corral_request_id", default=None)

bearer_token_var: ContextVar[str | None] = ContextVar("corral_bearer_token", default=None)
"""The bearer token of the request being served, set only once it verified (see
corral.sdk.identity); outgoing calls forward it so the callee sees the same caller."""


def current_request_id() -> str | None:
    """The id of the request being handled by this task, if any."""
    return request_id_var.get()
