"""Deadlines: the absolute time by which a chain of calls must be done.

An incoming request's ``x-corral-deadline`` header (Unix time, seconds) becomes the
deadline of everything its handler does (:class:`DeadlineMiddleware`); code can set a
tighter one with ``with deadline(2.0): ...``. Outgoing calls send the time left (as the
same absolute header, capped by the attempt's timeout) and never start once it passed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

from corral import contract

__all__ = ["DeadlineMiddleware", "current_deadline", "deadline", "remaining"]

deadline_var: ContextVar[float | None] = ContextVar("corral_deadline", default=None)
_HEADER = contract.DEADLINE_HEADER.encode()


def current_deadline() -> float | None:
    """The current deadline (Unix time), if any."""
    return deadline_var.get()


def remaining() -> float | None:
    """Seconds left before the current deadline (negative once passed), or None."""
    at = deadline_var.get()
    return None if at is None else at - time.time()


@contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Calls inside must finish within ``seconds`` (or the outer deadline, if sooner)."""
    at = time.time() + seconds
    outer = deadline_var.get()
    if outer is not None and outer < at:
        at = outer
    token = deadline_var.set(at)
    try:
        yield at
    finally:
        deadline_var.reset(token)


def parse_deadline(value: bytes | str) -> float | None:
    try:
        at = float(value)
    except ValueError:
        return None
    return at if at > 0 and at == at and at != float("inf") else None


class DeadlineMiddleware:
    """Pure ASGI: the caller's deadline header becomes the handler's deadline."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == _HEADER:
                    at = parse_deadline(value)
                    if at is not None:
                        token = deadline_var.set(at)
                        try:
                            await self.app(scope, receive, send)
                        finally:
                            deadline_var.reset(token)
                        return
                    break
        await self.app(scope, receive, send)
