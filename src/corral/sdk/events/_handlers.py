"""Handler signatures: which parameter gets the payload, the session, the envelope."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from corral.sdk.events._envelope import Envelope

HandlerFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class HandlerSpec:
    topic: str
    fn: HandlerFn
    model: type[BaseModel] | None
    payload_param: str | None
    session_param: str | None
    envelope_param: str | None


def inspect_handler(topic: str, fn: HandlerFn) -> HandlerSpec:
    """Read the handler's annotations: a pydantic model parameter gets the payload, an
    ``AsyncSession`` one a session whose transaction also records the event in the inbox,
    an :class:`Envelope` one the envelope."""
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"event handler {fn.__qualname__} must be an async def")
    hints = typing.get_type_hints(fn)
    model: type[BaseModel] | None = None
    payload = session = envelope = None
    for name in inspect.signature(fn).parameters:
        hint = hints.get(name)
        if isinstance(hint, type) and issubclass(hint, Envelope):
            envelope = name
        elif isinstance(hint, type) and issubclass(hint, BaseModel) and payload is None:
            model, payload = hint, name
        elif isinstance(hint, type) and issubclass(hint, AsyncSession):
            session = name
        elif payload is None:
            payload = name  # untyped: the raw JSON data
        else:
            raise TypeError(
                f"event handler {fn.__qualname__}: cannot tell what to pass as {name!r}; "
                "annotate it with the payload model, AsyncSession or Envelope"
            )
    return HandlerSpec(topic, fn, model, payload, session, envelope)
