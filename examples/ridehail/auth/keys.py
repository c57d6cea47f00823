"""Signing keys, their rotation without downtime, and the JWKS document.

Tokens are signed with ES256 (ECDSA P-256), which Envoy's jwt_authn, every JWT library
and every browser crypto API accept; EdDSA would be smaller but is less widely
supported by gateways and identity tooling.

A key ring holds three keys, all published in the JWKS::

    next      published, not yet signing  (verifiers learn it before the first token)
    current   signs every new token
    previous  no longer signs; still verifies tokens it signed that have not expired

:meth:`KeyRing.rotate` shifts them: previous is dropped, current becomes previous, next
becomes current, and a fresh next is generated. A verifier that cached the JWKS at any
point in the last rotation period already knows the key that signs now, and tokens
signed just before a rotation stay valid until they expire, as long as
``rotate_every >= token TTL + verifier cache time`` (checked by :class:`RotationRules`).
The ring is saved through a :class:`KeyStore` (the auth service's own database), so every
replica signs with the same key and a restart keeps them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ALGORITHM = "ES256"


class KeyState(StrEnum):
    NEXT = "next"
    CURRENT = "current"
    PREVIOUS = "previous"


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    state: KeyState
    private_pem: str
    created_at: datetime

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.private_pem.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key().public_key()

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(self.public_key(), as_dict=True)
        return jwk | {"kid": self.kid, "use": "sig", "alg": ALGORITHM}


def generate_key(state: KeyState, now: datetime) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    kid = f"{now:%Y%m%d}-{uuid.uuid4().hex[:12]}"
    return SigningKey(kid=kid, state=state, private_pem=pem, created_at=now)


@dataclass(frozen=True, slots=True)
class RotationRules:
    token_ttl: timedelta = timedelta(minutes=15)
    verifier_cache: timedelta = timedelta(minutes=5)
    rotate_every: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        if self.rotate_every < self.token_ttl + self.verifier_cache:
            raise ValueError(
                f"rotate_every ({self.rotate_every}) must be at least token_ttl + "
                f"verifier_cache ({self.token_ttl + self.verifier_cache}), or tokens signed "
                "just before a rotation would be refused before they expire"
            )


class KeyStore(Protocol):
    async def load(self) -> list[SigningKey]: ...

    async def replace(self, expected: list[str], keys: list[SigningKey]) -> bool:
        """Save ``keys`` if the stored kids are still ``expected`` (compare-and-swap, so
        two replicas rotating at once agree on one ring); False when someone else won."""
        ...


class MemoryKeyStore:
    def __init__(self) -> None:
        self.keys: list[SigningKey] = []

    async def load(self) -> list[SigningKey]:
        return list(self.keys)

    async def replace(self, expected: list[str], keys: list[SigningKey]) -> bool:
        if sorted(k.kid for k in self.keys) != sorted(expected):
            return False
        self.keys = list(keys)
        return True


class KeyRing:
    """This replica's view of the keys; :meth:`refresh` reloads it from the store."""

    def __init__(self, store: KeyStore, rules: RotationRules | None = None) -> None:
        self.store = store
        self.rules = rules or RotationRules()
        self._keys: list[SigningKey] = []

    @property
    def keys(self) -> list[SigningKey]:
        return list(self._keys)

    def _by_state(self, state: KeyState) -> SigningKey | None:
        return next((k for k in self._keys if k.state is state), None)

    @property
    def current(self) -> SigningKey:
        key = self._by_state(KeyState.CURRENT)
        if key is None:
            raise RuntimeError("the key ring is empty: call ensure() at start")
        return key

    def find(self, kid: str) -> SigningKey | None:
        return next((k for k in self._keys if k.kid == kid), None)

    def jwks(self) -> dict[str, Any]:
        """Every published key, the signing one first."""
        order = {KeyState.CURRENT: 0, KeyState.NEXT: 1, KeyState.PREVIOUS: 2}
        return {"keys": [k.jwk() for k in sorted(self._keys, key=lambda k: order[k.state])]}

    async def refresh(self) -> None:
        self._keys = await self.store.load()

    async def ensure(self, now: datetime) -> None:
        """Load the ring; create it (current + next) the first time; rotate when due."""
        await self.refresh()
        if self._by_state(KeyState.CURRENT) is None:
            fresh = [generate_key(KeyState.CURRENT, now), generate_key(KeyState.NEXT, now)]
            await self.store.replace([k.kid for k in self._keys], fresh)
            await self.refresh()
        await self.rotate_if_due(now)

    async def rotate_if_due(self, now: datetime) -> bool:
        current = self._by_state(KeyState.CURRENT)
        if current is None or now - current.created_at < self.rules.rotate_every:
            return False
        return await self.rotate(now)

    async def rotate(self, now: datetime) -> bool:
        """Shift next -> current -> previous, add a new next. False if another replica
        rotated first (this ring is reloaded either way)."""
        before = [k.kid for k in self._keys]
        rotated: list[SigningKey] = []
        for key in self._keys:
            if key.state is KeyState.CURRENT:
                rotated.append(replace(key, state=KeyState.PREVIOUS))
            elif key.state is KeyState.NEXT:
                # Its age now counts from when it starts signing.
                rotated.append(replace(key, state=KeyState.CURRENT, created_at=now))
        if not any(k.state is KeyState.CURRENT for k in rotated):
            rotated.append(generate_key(KeyState.CURRENT, now))
        rotated.append(generate_key(KeyState.NEXT, now))
        won = await self.store.replace(before, rotated)
        await self.refresh()
        return won
