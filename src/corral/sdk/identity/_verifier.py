"""Token verification with the gateway's pins, and a cache of verdicts.

A token is accepted when, as Envoy's jwt_authn would have it: its algorithm is one the
provider pins (asymmetric only: ``none`` and ``HS256`` are refused before any key is
looked at), a key of the provider whose id and type fit verifies its signature, ``iss``
is the provider's issuer, ``aud`` holds one of its audiences, and ``exp``/``nbf`` (when
present) hold within the clock skew. A token must also name its subject (``sub``): an
identity without one names no caller. PyJWT does the cryptography and the registered
claims; this module chooses the provider and the keys.

Verifying a signature costs tens of microseconds (RS256; see bench/identity.py), so a
verified token is remembered until it expires, under the key set generation that
verified it: when the keys change, it is checked again.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.exceptions import PyJWTError

from corral.sdk.identity._config import ProviderConfig
from corral.sdk.identity._errors import InvalidToken
from corral.sdk.identity._identity import Identity
from corral.sdk.identity._keys import KeySet

__all__ = ["InvalidToken", "Provider", "TokenVerifier"]


@dataclass(frozen=True, slots=True)
class Provider:
    config: ProviderConfig
    keys: KeySet


@dataclass(frozen=True, slots=True)
class _Verdict:
    identity: Identity
    keys: KeySet
    generation: int
    not_after: float
    """Wall-clock time after which the token is expired (exp + skew), or +inf."""
    not_before: float
    """Wall-clock time before which it is not valid yet (nbf - skew), or -inf."""


class TokenVerifier:
    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.providers = tuple(providers)
        self._by_issuer: dict[str, list[Provider]] = {}
        for provider in self.providers:
            self._by_issuer.setdefault(provider.config.issuer, []).append(provider)
        self._forward = {p.config.name: p.config.forward_claims for p in self.providers}
        self._cache: dict[str, _Verdict] = {}
        self._cache_size = cache_size
        self._clock = clock

    def forward_claims(self, provider: str) -> tuple[str, ...]:
        """The claims the gateway forwards as headers for tokens of ``provider``."""
        return self._forward.get(provider, ())

    async def verify(self, token: str) -> Identity:
        """The identity ``token`` proves; raises :class:`InvalidToken` (why not) or
        :class:`~corral.sdk.identity._keys.KeysUnavailable` (cannot tell yet)."""
        verdict = self._cache.get(token)
        if verdict is not None:
            keys = verdict.keys
            if keys.stale():
                await keys.refresh_if_stale()
            now = self._clock()
            if verdict.generation == keys.generation and (
                verdict.not_before <= now < verdict.not_after
            ):
                return verdict.identity
            self._cache.pop(token, None)
        return await self._verify(token)

    async def _verify(self, token: str) -> Identity:
        header, unverified = _peek(token)
        alg = header.get("alg")
        kid = header.get("kid")
        issuer = unverified.get("iss")
        candidates = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
        if not candidates:
            raise InvalidToken("the token's issuer is not one this system trusts")
        reason = "no key of the issuer verifies the token's signature"
        for provider in candidates:
            config = provider.config
            if alg not in config.algorithms:
                reason = f"algorithm {alg!r} is not accepted"
                continue
            keys = await provider.keys.keys_for(kid if isinstance(kid, str) else None, alg)
            generation = provider.keys.generation  # of the keys just returned
            for key in keys:
                try:
                    claims = jwt.decode(
                        token,
                        key=key,
                        algorithms=[alg],
                        audience=list(config.audiences),
                        issuer=config.issuer,
                        leeway=config.clock_skew_s,
                        # Envoy does not look at iat; neither does the gateway's peer here.
                        options={"verify_iat": False, "require": ["sub"]},
                    )
                except jwt.InvalidSignatureError:
                    continue  # another key with the same id may fit
                except PyJWTError as exc:
                    raise InvalidToken(str(exc)) from None
                if not isinstance(claims.get("sub"), str) or not claims["sub"]:
                    raise InvalidToken("the token's subject is not a non-empty string")
                identity = Identity.from_claims(
                    claims, provider=config.name, roles_claim=config.roles_claim
                )
                self._remember(token, identity, provider, generation, claims)
                return identity
        raise InvalidToken(reason)

    def _remember(
        self,
        token: str,
        identity: Identity,
        provider: Provider,
        generation: int,
        claims: dict[str, object],
    ) -> None:
        skew = provider.config.clock_skew_s
        exp, nbf = claims.get("exp"), claims.get("nbf")
        verdict = _Verdict(
            identity=identity,
            keys=provider.keys,
            generation=generation,
            not_after=float(exp) + skew if isinstance(exp, int | float) else float("inf"),
            not_before=float(nbf) - skew if isinstance(nbf, int | float) else -float("inf"),
        )
        if len(self._cache) >= self._cache_size:
            # The oldest entry goes (dicts keep insertion order): a bounded memory, and
            # no bookkeeping per hit as an LRU would need.
            del self._cache[next(iter(self._cache))]
        self._cache[token] = verdict


MAX_TOKEN_LENGTH = 16_384
"""Longer is refused unread (a token is a few hundred bytes to a few kilobytes)."""


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims, unverified: only to choose the provider and the keys;
    PyJWT checks the whole token when it verifies the signature. Written by hand:
    PyJWT's own parsing checks every character in a Python loop, about a hundred
    microseconds a time, and it parses the token again when it verifies."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed token: not three segments of a bounded length")
    try:
        header, claims = (
            json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            for part in parts[:2]
        )
    except (ValueError, RecursionError, binascii.Error):  # JSON and UTF-8 errors included
        raise InvalidToken("malformed token: its header or claims are not JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidToken("malformed token: its header or claims are not JSON objects")
    return header, claims
