"""FastAPI dependencies for the verified caller: ``Caller``, ``OptionalCaller`` and
``requires_role``. They read the verdict :class:`IdentityMiddleware` left in the request,
so they cost a dictionary lookup."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from corral.sdk._errors import Problem
from corral.sdk.identity._identity import Identity
from corral.sdk.identity._middleware import NO_TOKEN, SCOPE_KEY, Unverified

__all__ = ["Caller", "OptionalCaller", "optional_caller", "requires_role", "verified_caller"]


def _verdict(connection: HTTPConnection) -> Identity | Unverified:
    verdict: Identity | Unverified = connection.scope.get(SCOPE_KEY, NO_TOKEN)
    return verdict


async def verified_caller(connection: HTTPConnection) -> Identity:
    """The verified caller; 401 problem+json (saying why) without one, 503 while the
    provider's keys cannot be fetched."""
    verdict = _verdict(connection)
    if isinstance(verdict, Identity):
        return verdict
    if verdict.unavailable:
        raise Problem(
            503,
            "Identity cannot be verified now",
            detail=verdict.reason,
            headers={"Retry-After": "1"},
        )
    challenge = "Bearer" if verdict is NO_TOKEN else 'Bearer error="invalid_token"'
    raise Problem(
        401, "Not authenticated", detail=verdict.reason, headers={"WWW-Authenticate": challenge}
    )


async def optional_caller(connection: HTTPConnection) -> Identity | None:
    """The verified caller, or None (anonymous, or a token that did not verify)."""
    verdict = _verdict(connection)
    return verdict if isinstance(verdict, Identity) else None


def requires_role(*roles: str) -> Callable[[Identity], Awaitable[Identity]]:
    """A dependency: the verified caller when it has one of ``roles`` (else 403; no
    caller: 401). ``Annotated[Identity, Depends(requires_role("admin"))]`` in a handler's
    parameters, or ``dependencies=[Depends(requires_role("admin"))]`` on a route."""
    if not roles:
        raise ValueError("requires_role needs at least one role")
    wanted = frozenset(roles)
    needed = " or ".join(sorted(wanted))

    async def caller_with_role(caller: Annotated[Identity, Depends(verified_caller)]) -> Identity:
        if caller.roles.isdisjoint(wanted):
            raise Problem(403, "Forbidden", detail=f"this needs the role {needed}")
        return caller

    return caller_with_role


Caller = Annotated[Identity, Depends(verified_caller)]
"""A handler parameter: the verified caller (401/503 problem+json without one)."""

OptionalCaller = Annotated[Identity | None, Depends(optional_caller)]
"""A handler parameter: the verified caller, or None."""
