"""Access tokens: short-lived JWTs signed with the key ring's current key.

Verification always names its algorithms (``["ES256"]``) and requires every registered
claim we rely on, so ``alg: none``, an HS256 token "signed" with the public key, a token
for another audience, or one without an expiry are all refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt

from auth.keys import ALGORITHM, KeyRing


class Role(StrEnum):
    RIDER = "rider"
    DRIVER = "driver"
    ADMIN = "admin"


SIGNUP_ROLES = frozenset({Role.RIDER, Role.DRIVER})
"""Roles anyone may sign up for; admins are created by the operator (settings)."""


class InvalidToken(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    expires_in: int
    kid: str


@dataclass(frozen=True, slots=True)
class TokenIssuer:
    keys: KeyRing
    issuer: str = "ridehail-auth"
    audience: str = "ridehail"
    ttl: timedelta = timedelta(minutes=15)

    def issue(self, *, subject: str, role: Role, email: str, now: datetime) -> Issued:
        key = self.keys.current
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "role": str(role),
            "roles": [str(role)],  # the gateway matches roles in a list claim
            "email": email,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(
            claims, key.private_key(), algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"}
        )
        return Issued(token, int(self.ttl.total_seconds()), key.kid)

    def verify(self, token: str, *, now: datetime | None = None) -> dict[str, Any]:
        """The token's claims, or :class:`InvalidToken` saying why not."""
        try:
            header = jwt.get_unverified_header(token)
            key = self.keys.find(str(header.get("kid", "")))
            if key is None:
                raise InvalidToken(f"unknown key id {header.get('kid')!r}")
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key(),
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["exp", "iat", "nbf", "iss", "aud", "sub"],
                    # Time is checked below against an injectable clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        moment = (now or datetime.now(UTC)).timestamp()
        if not isinstance(claims["exp"], int) or claims["exp"] <= moment:
            raise InvalidToken("Signature has expired")
        if not isinstance(claims["nbf"], int) or claims["nbf"] > moment:
            raise InvalidToken("The token is not yet valid (nbf)")
        if claims.get("role") not in {r.value for r in Role}:
            raise InvalidToken("no valid role claim")
        return claims
