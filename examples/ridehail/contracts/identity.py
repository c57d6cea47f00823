"""Who is calling, in ridehail's terms: the SDK's verified caller with its one role.

The service verifies the bearer token itself (``corral.sdk.identity``: the same
providers the gateway checks, so a request straight to a service's port cannot claim to
be anyone), and calls through ``svc.client`` forward the token, so tracking sees the
driver rides asked for. This module only narrows the verified identity to what the
handlers use: the user's id and their one role (rider, driver or admin).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from corral.sdk import Problem
from corral.sdk.identity import Caller as VerifiedCaller

ROLES = ("rider", "driver", "admin")


@dataclass(frozen=True, slots=True)
class Caller:
    id: str
    role: str


async def _caller(identity: VerifiedCaller) -> Caller:
    # async although it awaits nothing: FastAPI runs a plain ``def`` dependency on its
    # thread pool, a hop to a worker thread and back on every request.
    role = next((r for r in ROLES if r in identity.roles), None)
    if role is None:
        raise Problem(403, "Forbidden", detail="no ridehail role (rider, driver or admin)")
    return Caller(identity.subject, role)


CallerDep = Annotated[Caller, Depends(_caller)]


def require(caller: Caller, *roles: str) -> None:
    """403 unless the caller has one of ``roles``."""
    if caller.role not in roles:
        raise Problem(403, "Forbidden", detail=f"this needs the role {' or '.join(roles)}")
