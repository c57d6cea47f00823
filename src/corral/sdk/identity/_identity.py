"""``Identity``: the caller a verified token names, and where the request keeps it."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from corral import contract

__all__ = ["Identity", "claim_header_value", "current_identity", "identity_var"]


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller of the request being served, from a token the service verified itself
    (signature, issuer, audience, expiry: see corral.sdk.identity)."""

    subject: str
    """The token's ``sub``."""
    roles: frozenset[str]
    """From the provider's roles claim (``roles`` unless the manifest says otherwise): a
    list of strings, or one string."""
    provider: str
    """The manifest's name of the provider that issued the token."""
    claims: Mapping[str, Any] = field(repr=False)
    """Every claim of the token, read-only."""
    expires_at: float | None = None
    """The token's ``exp`` (Unix seconds), when it has one."""

    def has_role(self, *roles: str) -> bool:
        """True when the caller has at least one of ``roles``."""
        return not self.roles.isdisjoint(roles)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], *, provider: str, roles_claim: str) -> Identity:
        raw = claims.get(roles_claim)
        if isinstance(raw, str):
            roles = frozenset({raw})
        elif isinstance(raw, list):
            roles = frozenset(r for r in raw if isinstance(r, str))
        else:
            roles = frozenset()
        exp = claims.get("exp")
        return cls(
            subject=str(claims["sub"]),
            roles=roles,
            provider=provider,
            claims=MappingProxyType(dict(claims)),
            expires_at=float(exp) if isinstance(exp, int | float) else None,
        )


identity_var: ContextVar[Identity | None] = ContextVar("corral_identity", default=None)


def current_identity() -> Identity | None:
    """The verified caller of the request this task serves (None: none, or unverified).
    In handlers prefer the ``Caller`` dependency, which answers 401 itself."""
    return identity_var.get()


def claim_header_value(value: Any) -> str | None:
    """A claim as the gateway writes it into an ``x-corral-claim-*`` header (Envoy's
    jwt_authn ``claim_to_headers``, as measured against Envoy 1.40): strings as they are,
    booleans ``true``/``false``, integers in decimal, other numbers with six decimals,
    lists and objects as base64 of their JSON; None for a null claim."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:f}"
    if value is None:
        return None
    compact = json.dumps(value, separators=(",", ":")).encode()
    return base64.b64encode(compact).decode()


def claim_header(claim: str) -> bytes:
    return (contract.CLAIM_HEADER_PREFIX + claim.lower()).encode("latin-1")
