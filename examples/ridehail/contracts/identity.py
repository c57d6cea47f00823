"""Who is calling: the identity the gateway verified.

The gateway (Envoy jwt_authn) checks the token's signature, issuer, audience, expiry and
role, strips any client-supplied ``x-corral-claim-*`` header, and forwards the verified
``sub`` and ``role`` claims as ``x-corral-claim-sub`` / ``x-corral-claim-role``. Services
trust these headers because only the gateway is exposed; a request that reaches a
service without them is refused with 401 (it did not come through the gateway's JWT
check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header

from corral.sdk import Problem

SUB_HEADER = "x-corral-claim-sub"
ROLE_HEADER = "x-corral-claim-role"
ROLES = ("rider", "driver", "admin")


@dataclass(frozen=True, slots=True)
class Caller:
    id: str
    role: str


def _caller(
    sub: Annotated[str | None, Header(alias=SUB_HEADER)] = None,
    role: Annotated[str | None, Header(alias=ROLE_HEADER)] = None,
) -> Caller:
    if not sub or role not in ROLES:
        raise Problem(401, "Not authenticated", detail="no verified identity from the gateway")
    assert role is not None
    return Caller(sub, role)


CallerDep = Annotated[Caller, Depends(_caller)]


def on_behalf_of(caller: Caller) -> dict[str, str]:
    """Headers for a call to another service made for ``caller`` (rides asking tracking
    for the distance of the driver's own ride): the callee checks ownership against the
    same identity the gateway verified, never a service-wide pass."""
    return {SUB_HEADER: caller.id, ROLE_HEADER: caller.role}


def require(caller: Caller, *roles: str) -> None:
    """403 unless the caller has one of ``roles``."""
    if caller.role not in roles:
        raise Problem(403, "Forbidden", detail=f"this needs the role {' or '.join(roles)}")
