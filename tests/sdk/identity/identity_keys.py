"""Signing keys and JWKS documents for the identity tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://auth.test"
AUDIENCE = "shop"


@dataclass
class SigningKey:
    kid: str
    private: Any
    alg: str

    @classmethod
    def rsa(cls, kid: str, alg: str = "RS256") -> SigningKey:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), alg)

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")

    def jwk(self, *, alg: str | None = "default") -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg[:2] in ("RS", "PS") else ECAlgorithm
        out: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        out.update(kid=self.kid, use="sig")
        if alg is not None:
            out["alg"] = self.alg if alg == "default" else alg
        return out

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def token(
        self,
        claims: dict[str, Any] | None = None,
        *,
        alg: str | None = None,
        kid: str | None = "same",
    ) -> str:
        headers = {} if kid is None else {"kid": self.kid if kid == "same" else kid}
        return jwt.encode(
            claims if claims is not None else valid_claims(),
            self.private,
            algorithm=alg or self.alg,
            headers=headers,
        )


def valid_claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": now,
        "exp": now + 300,
        "roles": ["rider"],
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def jwks(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()
