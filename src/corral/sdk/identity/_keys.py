"""A provider's signing keys (its JWKS), fetched when first needed and kept ``cache_s``.

- A stale set is re-fetched by the first request that needs it, once (the others wait
  for that fetch rather than starting their own).
- A token naming a key id the set lacks re-fetches at once (at most once a second), so a
  key the issuer just added is accepted without waiting for the cache to expire.
- A failed re-fetch keeps the keys already known (a provider being restarted must not
  log everyone out) and is retried a second later; with no keys at all, verification
  fails with :class:`KeysUnavailable` (fail closed).
- ``generation`` changes whenever the fetched set differs from the one before, so
  verdicts remembered under older keys (see _verifier.py) are checked again: a token
  signed by a withdrawn key stops passing within ``cache_s``. (The gateway's own token
  cache cannot do this, docs/gateway.md "Limits".)

Only keys for signing with an asymmetric algorithm are used: a JWKS is public, and a
symmetric (``oct``) key in it would let anyone sign.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from jwt import PyJWK
from jwt.exceptions import PyJWTError
from structlog.typing import FilteringBoundLogger

from corral.sdk.identity._errors import KeysUnavailable

__all__ = ["Fetch", "KeySet", "KeysUnavailable", "check_size", "fetch_file", "fetch_url"]

Fetch = Callable[[], Awaitable[bytes]]
"""Returns a JWKS document (raises on any failure)."""

MAX_JWKS_BYTES = 1 << 20
"""A JWKS larger than this is refused (a key set is a few kilobytes)."""

_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


def fetch_file(path: str) -> Fetch:
    async def fetch() -> bytes:
        data = await asyncio.to_thread(Path(path).read_bytes)
        check_size(len(data))
        return data

    return fetch


def fetch_url(url: str, *, timeout: float = 2.0) -> Fetch:
    async def fetch() -> bytes:
        # A session per fetch: one every cache_s at most, so no pool to keep or close.
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url) as response,
        ):
            response.raise_for_status()
            check_size(response.content_length or 0)
            data = await response.content.read(MAX_JWKS_BYTES + 1)
            check_size(len(data))
            return data

    return fetch


def check_size(size: int) -> None:
    if size > MAX_JWKS_BYTES:
        raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")


def _fits(jwk: dict[str, Any], alg: str) -> bool:
    """Whether ``jwk`` may verify a signature made with ``alg``: the algorithm the key
    names, or else one its type and curve allow."""
    if jwk.get("use", "sig") != "sig":
        return False
    named = jwk.get("alg")
    if named is not None and named != alg:
        return False
    kty = jwk.get("kty")
    if kty == "RSA":
        return alg[:2] in ("RS", "PS")
    if kty == "EC":
        return _CURVES.get(str(jwk.get("crv"))) == alg
    if kty == "OKP":
        return alg == "EdDSA" and jwk.get("crv") in ("Ed25519", "Ed448")
    return False  # "oct" (symmetric) and anything unknown


class KeySet:
    def __init__(
        self,
        fetch: Fetch,
        *,
        provider: str,
        cache_s: float,
        log: FilteringBoundLogger,
        clock: Callable[[], float] = time.monotonic,
        unknown_kid_interval: float = 1.0,
    ) -> None:
        self.provider = provider
        self.generation = 0
        self._fetch = fetch
        self._cache_s = cache_s
        self._log = log
        self._clock = clock
        self._unknown_kid_interval = unknown_kid_interval
        self._jwks: list[dict[str, Any]] | None = None
        self._canonical = ""
        self._parsed: dict[tuple[int, str], PyJWK] = {}
        self._expires = 0.0
        self._completed = -float("inf")
        self._failure = "not fetched yet"
        self._lock = asyncio.Lock()

    def stale(self) -> bool:
        """True when the keys must be (re-)fetched before use: ``cache_s`` has passed. A
        remembered verdict asks this first, so a steady stream of known tokens still
        notices a withdrawn key."""
        return self._jwks is None or self._clock() >= self._expires

    async def refresh_if_stale(self) -> None:
        if self.stale():
            await self._refresh()

    async def keys_for(self, kid: str | None, alg: str) -> Sequence[PyJWK]:
        """The keys that may have signed a token with this ``kid`` and ``alg``; raises
        :class:`KeysUnavailable` while no key set could be fetched yet."""
        await self.refresh_if_stale()
        found = self._match(kid, alg)
        if (
            not found
            and kid is not None
            and self._clock() - self._completed >= self._unknown_kid_interval
        ):
            await self._refresh()
            found = self._match(kid, alg)
        return found

    def _match(self, kid: str | None, alg: str) -> list[PyJWK]:
        found: list[PyJWK] = []
        for index, jwk in enumerate(self._jwks or ()):
            # A token naming a key is checked against that key (and keys without an id).
            if kid is not None and jwk.get("kid") not in (None, kid):
                continue
            if not _fits(jwk, alg):
                continue
            key = self._parsed.get((index, alg))
            if key is None:
                try:
                    key = PyJWK(jwk, algorithm=alg)
                except PyJWTError:
                    continue  # a malformed key verifies nothing
                self._parsed[(index, alg)] = key
            found.append(key)
        return found

    async def _refresh(self) -> None:
        asked = self._clock()
        async with self._lock:
            # A fetch that ended after this request asked stands (one fetch for a crowd),
            # and a provider that is down is asked at most once a second.
            if self._completed < asked and not (
                self._jwks is None and asked - self._completed < self._unknown_kid_interval
            ):
                try:
                    await self._fetch_now()
                finally:
                    self._completed = self._clock()
        if self._jwks is None:
            raise KeysUnavailable(
                f"keys of provider {self.provider!r} cannot be fetched: {self._failure}"
            )

    async def _fetch_now(self) -> None:
        try:
            keys = _parse(await self._fetch())
        except Exception as exc:
            self._failure = str(exc) or type(exc).__name__
            self._expires = self._clock() + min(1.0, self._cache_s)
            if self._jwks is not None:
                self._log.warning(
                    "identity keys re-fetch failed; keeping the known ones",
                    provider=self.provider,
                    error=self._failure,
                )
            return
        canonical = json.dumps(keys, sort_keys=True)
        if canonical != self._canonical:
            self._jwks, self._canonical, self._parsed = keys, canonical, {}
            self.generation += 1
        self._expires = self._clock() + self._cache_s


def _parse(document: bytes) -> list[dict[str, Any]]:
    data = json.loads(document)
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        raise ValueError("not a JWKS: no 'keys' list")
    return [k for k in keys if isinstance(k, dict)]
