"""Token verification: the gateway's pins, the verdict cache and key rotation (in-memory
key sources; the same code reads files and services in the system tests)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from identity_keys import AUDIENCE, ISSUER, SigningKey, jwks, valid_claims

from corral import contract
from corral.sdk import get_logger
from corral.sdk.identity import (
    IdentityConfig,
    InvalidToken,
    KeysUnavailable,
    ProviderConfig,
    TokenVerifier,
)
from corral.sdk.identity._keys import KeySet
from corral.sdk.identity._verifier import Provider
from corral.sdk.testing import capture_logs

RSA = SigningKey.rsa("k1")
EC = SigningKey.ec("e1")
OTHER = SigningKey.rsa("k1")  # the same key id, another key


class Source:
    """A JWKS served from memory: the document can change, the fetch can fail."""

    def __init__(self, document: bytes) -> None:
        self.document = document
        self.failure: Exception | None = None
        self.fetches = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> bytes:
        self.fetches += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return self.document


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    source: Source,
    *,
    skew: float = 0.0,
    cache_s: float = 30.0,
    clock: Clock | None = None,
    verdict_clock: Callable[[], float] = time.time,
) -> TokenVerifier:
    config = ProviderConfig(
        name="main",
        issuer=ISSUER,
        audiences=(AUDIENCE, "other"),
        jwks={"file": "unused"},  # type: ignore[arg-type]
        cache_s=cache_s,
        clock_skew_s=skew,
    )
    keys = KeySet(
        source, provider="main", cache_s=cache_s, log=get_logger(), clock=clock or Clock()
    )
    return TokenVerifier([Provider(config, keys)], clock=verdict_clock)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def hs256_with_public_key() -> str:
    """The classic confusion: HS256 "signed" with the RSA public key as the secret."""
    signing_input = unsigned({"alg": "HS256", "typ": "JWT", "kid": "k1"}, valid_claims())
    mac = hmac.new(RSA.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(mac)


def tampered() -> str:
    header, _, signature = RSA.token().split(".")
    payload = _b64(json.dumps(valid_claims(sub="admin")).encode())
    return f"{header}.{payload}.{signature}"


def now() -> int:
    # Read when the token is made, not when the module is imported: a suite on a loaded
    # machine may run this file minutes after collecting it.
    return int(time.time())


BAD: list[tuple[str, Callable[[], str], str]] = [
    ("expired", lambda: RSA.token(valid_claims(exp=now() - 60)), "expired"),
    ("not yet valid", lambda: RSA.token(valid_claims(nbf=now() + 600)), "not yet valid"),
    ("another issuer", lambda: RSA.token(valid_claims(iss="https://evil.test")), "issuer"),
    ("another audience", lambda: RSA.token(valid_claims(aud="elsewhere")), "(?i)audience"),
    ("no audience", lambda: RSA.token(valid_claims(aud=None)), "aud"),
    ("no subject", lambda: RSA.token(valid_claims(sub=None)), "sub"),
    ("empty subject", lambda: RSA.token(valid_claims(sub="")), "subject"),
    ("alg none", lambda: unsigned({"alg": "none"}, valid_claims()) + ".", "'none'"),
    ("HS256 with the public key", hs256_with_public_key, "'HS256'"),
    ("tampered payload", tampered, "signature"),
    ("another key, same id", lambda: OTHER.token(), "signature"),
    ("unknown key id", lambda: RSA.token(kid="nope"), "signature"),
    ("wrong algorithm for the key", lambda: RSA.token(alg="PS256"), "signature"),
    ("garbage", lambda: "not.a.token", "malformed"),
]


@pytest.mark.parametrize(("token", "why"), [(t, w) for _, t, w in BAD], ids=[n for n, _, _ in BAD])
async def test_tokens_the_gateway_refuses_are_refused(token: Callable[[], str], why: str) -> None:
    """Each token the gateway answers 401 to proves no identity here either, and the
    reason says which check failed."""
    verifier = make(Source(jwks(RSA.jwk(), EC.jwk())))
    with pytest.raises(InvalidToken, match=why):
        await verifier.verify(token())


@pytest.mark.parametrize("key", [RSA, EC], ids=["RS256", "ES256"])
async def test_a_valid_token_proves_its_identity(key: SigningKey) -> None:
    """Subject, roles (from the roles claim), provider and expiry come from the token."""
    verifier = make(Source(jwks(RSA.jwk(), EC.jwk(alg=None))))
    identity = await verifier.verify(key.token(valid_claims(roles=["rider", "admin"])))
    assert identity.subject == "user-1"
    assert identity.roles == {"rider", "admin"}
    assert identity.provider == "main"
    assert identity.has_role("admin", "driver")
    assert not identity.has_role("driver")
    assert identity.claims["aud"] == AUDIENCE


async def test_clock_skew_is_allowed_as_at_the_gateway() -> None:
    """A token expired less than the clock skew ago still passes (as through Envoy)."""
    verifier = make(Source(jwks(RSA.jwk())), skew=120)
    await verifier.verify(RSA.token(valid_claims(exp=now() - 60)))


async def test_a_symmetric_key_in_the_key_set_verifies_nothing() -> None:
    """A JWKS is public: an ``oct`` key in it is ignored, even for a token naming it."""
    secret = b"shared-secret-of-32-bytes-long!!"
    oct_key = {"kty": "oct", "kid": "k1", "k": _b64(secret), "alg": "HS256"}
    verifier = make(Source(jwks(oct_key)))
    signing_input = unsigned({"alg": "HS256", "kid": "k1"}, valid_claims())
    token = (
        signing_input
        + "."
        + _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
    )
    with pytest.raises(InvalidToken, match="'HS256' is not accepted"):
        await verifier.verify(token)


async def test_verdicts_are_remembered_until_expiry() -> None:
    """A verified token is not verified again (the same Identity comes back) until the
    verdict's time is up, then it is checked anew."""
    clock = [time.time()]
    verifier = make(Source(jwks(RSA.jwk())), verdict_clock=lambda: clock[0])
    token = RSA.token()
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first
    clock[0] += 3600  # past exp: the verdict is dropped, PyJWT (real time) checks again
    assert await verifier.verify(token) is not first


async def test_a_withdrawn_key_stops_passing_once_keys_are_refetched() -> None:
    """Rotation: after cache_s the keys are fetched again; a remembered token signed by
    a key no longer in the set is refused, a token of the new key passes."""
    source, clock = Source(jwks(RSA.jwk())), Clock()
    verifier = make(source, cache_s=30, clock=clock)
    old = RSA.token()
    await verifier.verify(old)
    source.document = jwks(EC.jwk())
    clock.now += 10
    await verifier.verify(old)  # within cache_s: the known keys still hold
    clock.now += 30
    with pytest.raises(InvalidToken):
        await verifier.verify(old)
    await verifier.verify(EC.token())
    assert source.fetches == 2


async def test_a_new_key_id_refetches_at_once_but_not_on_every_request() -> None:
    """A token naming a key the set lacks fetches the set again (a key just added is
    accepted without waiting for cache_s), at most once a second."""
    source, clock = Source(jwks(RSA.jwk())), Clock()
    verifier = make(source, clock=clock)
    await verifier.verify(RSA.token())
    added = SigningKey.rsa("k2")
    clock.now += 2
    with pytest.raises(InvalidToken):
        await verifier.verify(added.token())  # not published yet: one re-fetch
    for _ in range(5):
        with pytest.raises(InvalidToken):
            await verifier.verify(added.token(valid_claims(sub="again")))
    assert source.fetches == 2
    source.document = jwks(RSA.jwk(), added.jwk())
    clock.now += 2
    assert (await verifier.verify(added.token())).subject == "user-1"
    assert source.fetches == 3


async def test_a_failed_refetch_keeps_the_known_keys() -> None:
    """The provider away (restarting): known keys keep verifying, with one warning."""
    source, clock = Source(jwks(RSA.jwk())), Clock()
    verifier = make(source, cache_s=5, clock=clock)
    await verifier.verify(RSA.token())
    source.failure = ConnectionError("auth is restarting")
    clock.now += 10
    with capture_logs() as logs:
        identity = await verifier.verify(RSA.token(valid_claims(sub="user-2")))
    assert identity.subject == "user-2"
    (warning,) = [line for line in logs if line["level"] == "warning"]
    assert warning["error"] == "auth is restarting"


async def test_no_keys_at_all_is_unavailable_not_invalid() -> None:
    """Before any key set could be fetched, tokens cannot be judged: KeysUnavailable
    (the dependency answers 503), and the source is asked at most once a second."""
    source, clock = Source(b""), Clock()
    source.failure = ConnectionError("connection refused")
    verifier = make(source, clock=clock)
    for _ in range(3):
        with pytest.raises(KeysUnavailable, match="connection refused"):
            await verifier.verify(RSA.token())
    assert source.fetches == 1
    clock.now += 2
    source.failure = None
    source.document = jwks(RSA.jwk())
    await verifier.verify(RSA.token())


async def test_a_crowd_of_requests_fetches_the_keys_once() -> None:
    """Many first requests at once wait for one fetch."""
    source = Source(jwks(RSA.jwk()))
    source.gate = asyncio.Event()
    verifier = make(source)
    waiting = [
        asyncio.create_task(verifier.verify(RSA.token(valid_claims(sub=f"u{n}"))))
        for n in range(20)
    ]
    await asyncio.sleep(0)
    source.gate.set()
    identities = await asyncio.gather(*waiting)
    assert {i.subject for i in identities} == {f"u{n}" for n in range(20)}
    assert source.fetches == 1


def test_the_configuration_pins_asymmetric_algorithms() -> None:
    """CORRAL_IDENTITY may narrow the algorithms, never allow a symmetric one or none."""
    base = {"name": "m", "issuer": "i", "audiences": ["a"], "jwks": {"service": "auth"}}
    assert ProviderConfig.model_validate(base).algorithms == contract.JWT_ALGORITHMS
    for refused in (["HS256"], ["none"], []):
        with pytest.raises(ValueError, match="algorithm"):
            ProviderConfig.model_validate({**base, "algorithms": refused})
    with pytest.raises(ValueError, match="exactly one"):
        IdentityConfig.model_validate(
            {"providers": [{**base, "jwks": {"service": "auth", "file": "k.json"}}]}
        )
