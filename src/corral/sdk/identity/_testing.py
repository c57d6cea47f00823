"""``TokenIssuer``: a JWT provider for tests, signing tokens a service verifies as it
would a real provider's (key set in a file, named by ``CORRAL_IDENTITY``)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from corral import contract

__all__ = ["TokenIssuer"]


class TokenIssuer:
    """Tokens for a service under test::

    with TokenIssuer() as issuer:
        async with serve_in_process(svc, env=issuer.env()) as client:
            await client.get("/rides", headers=issuer.headers("rider-1", roles=["rider"]))
    """

    def __init__(
        self,
        *,
        issuer: str = "https://issuer.test",
        audience: str = "corral-test",
        provider: str = "test",
        kid: str = "test-key",
        forward_claims: tuple[str, ...] = ("sub",),
        roles_claim: str = "roles",
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.provider = provider
        self.kid = kid
        self.forward_claims = forward_claims
        self.roles_claim = roles_claim
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._folder = Path(tempfile.mkdtemp(prefix="corral-issuer-"))
        self.jwks_file = self._folder / "jwks.json"
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(self._key.public_key()))
        jwk.update(kid=kid, alg="ES256", use="sig")
        self.jwks_file.write_text(json.dumps({"keys": [jwk]}))

    def env(self) -> dict[str, str]:
        """``CORRAL_IDENTITY`` naming this issuer (for ``serve_in_process(env=...)``)."""
        provider = {
            "name": self.provider,
            "issuer": self.issuer,
            "audiences": [self.audience],
            "jwks": {"file": str(self.jwks_file)},
            "forward_claims": [*self.forward_claims],
            "roles_claim": self.roles_claim,
        }
        return {contract.IDENTITY: json.dumps({"providers": [provider]})}

    def token(
        self,
        subject: str,
        *,
        roles: tuple[str, ...] | list[str] = (),
        expires_in: float = 300.0,
        **claims: Any,
    ) -> str:
        """A signed token for ``subject`` (``claims`` added, or overriding the defaults)."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + int(expires_in),
            self.roles_claim: list(roles),
            **claims,
        }
        return jwt.encode(payload, self._key, algorithm="ES256", headers={"kid": self.kid})

    def headers(self, subject: str, **kwargs: Any) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}`` for :meth:`token`'s arguments."""
        return {"Authorization": f"Bearer {self.token(subject, **kwargs)}"}

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
