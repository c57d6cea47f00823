"""Argon2 passwords, ES256 tokens with key ids, JWKS and rotation without downtime, and
the characters an account's text may not hold."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from auth.keys import KeyRing, KeyState, MemoryKeyStore, RotationRules
from auth.passwords import Passwords, WeakPassword
from auth.text import JOINERS, refuse_hidden
from auth.tokens import InvalidToken, Role, TokenIssuer

NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
FAST = Passwords(time_cost=1, memory_kib=8, parallelism=1)


def ring(rules: RotationRules | None = None) -> KeyRing:
    keys = KeyRing(MemoryKeyStore(), rules)
    asyncio.run(keys.ensure(NOW))
    return keys


def issuer(keys: KeyRing | None = None) -> TokenIssuer:
    return TokenIssuer(keys or ring())


def test_password_hash_verifies_and_is_argon2id() -> None:
    """The right password verifies, a wrong one does not, and the hash is Argon2id."""
    stored = FAST.hash("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert FAST.verify(stored, "correct horse battery")
    assert not FAST.verify(stored, "correct horse batterx")
    assert not FAST.verify("not a hash", "correct horse battery")
    assert not FAST.verify(None, "correct horse battery")  # unknown user: still one verify


@pytest.mark.parametrize("password", ["short", "x" * 129, " padded password ", "        "])
def test_weak_passwords_are_refused(password: str) -> None:
    """Too short, too long, or space-padded passwords never get hashed."""
    with pytest.raises(WeakPassword):
        FAST.hash(password)


def test_token_round_trip_carries_kid_role_and_expiry() -> None:
    """An issued token verifies and carries sub, role, aud, iss, exp and the signing kid."""
    tokens = issuer()
    issued = tokens.issue(subject="u1", role=Role.DRIVER, email="d@x.org", now=NOW)
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "ES256", "kid": tokens.keys.current.kid, "typ": "JWT"}
    claims = tokens.verify(issued.token, now=NOW)
    assert claims["sub"] == "u1"
    assert claims["role"] == "driver"
    assert claims["exp"] - claims["iat"] == issued.expires_in == 900


def _forge(
    token: str, *, header: dict[str, object] | None = None, payload: dict[str, object] | None = None
) -> str:
    h, p, s = token.split(".")

    def enc(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    def dec(part: str) -> dict[str, object]:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    return ".".join([enc(dec(h) | (header or {})), enc(dec(p) | (payload or {})), s])


def test_hostile_tokens_are_refused() -> None:
    """alg none, HS256 keyed with the public key, tampering, unknown kid, wrong audience,
    wrong issuer and expiry all fail verification."""
    tokens = issuer()
    good = tokens.issue(subject="u1", role=Role.RIDER, email="r@x.org", now=NOW).token
    kid = tokens.keys.current.kid
    public_pem = tokens.keys.current.public_key().public_bytes(
        encoding=__import__(
            "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]
        ).Encoding.PEM,
        format=__import__(
            "cryptography.hazmat.primitives.serialization", fromlist=["PublicFormat"]
        ).PublicFormat.SubjectPublicKeyInfo,
    )
    claims = jwt.decode(good, options={"verify_signature": False})
    hostile = {
        "alg none": jwt.encode(claims, None, algorithm="none", headers={"kid": kid}),
        "hs256 with public key": _hs256(claims, public_pem, kid),
        "tampered role": _forge(good, payload={"role": "admin"}),
        "unknown kid": _forge(good, header={"kid": "nope"}),
        "wrong audience": TokenIssuer(tokens.keys, audience="other")
        .issue(subject="u1", role=Role.RIDER, email="r@x.org", now=NOW)
        .token,
        "wrong issuer": TokenIssuer(tokens.keys, issuer="evil")
        .issue(subject="u1", role=Role.RIDER, email="r@x.org", now=NOW)
        .token,
    }
    for name, token in hostile.items():
        with pytest.raises(InvalidToken):
            tokens.verify(token, now=NOW)
        assert name
    assert tokens.verify(good, now=NOW)["sub"] == "u1"
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(good, now=NOW + timedelta(minutes=16))
    with pytest.raises(InvalidToken, match="not yet valid"):
        tokens.verify(good, now=NOW - timedelta(minutes=1))


def _hs256(claims: dict[str, object], key: bytes, kid: str) -> str:
    # PyJWT refuses to HMAC with a PEM key; build the token by hand, as an attacker would.
    import hashlib
    import hmac

    def enc(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        enc(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
        + "."
        + enc(json.dumps(claims).encode())
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + enc(signature)


def test_jwks_publishes_current_and_next_as_ec_p256() -> None:
    """A new ring publishes two P-256 keys: the signing one first, then the next."""
    keys = ring()
    jwks = keys.jwks()["keys"]
    assert [k["kid"] for k in jwks] == [
        keys.current.kid,
        next(k.kid for k in keys.keys if k.state is KeyState.NEXT),
    ]
    assert all(k["kty"] == "EC" and k["crv"] == "P-256" and k["alg"] == "ES256" for k in jwks)
    assert all("d" not in k for k in jwks)  # never the private part


def test_rotation_keeps_old_tokens_valid_and_new_key_pre_published() -> None:
    """After a rotation the old token still verifies (previous key) and the key now signing
    was already in the JWKS before the rotation; a second rotation retires it."""
    keys = ring()
    tokens = issuer(keys)
    old = tokens.issue(subject="u1", role=Role.RIDER, email="r@x.org", now=NOW).token
    published_before = {k["kid"] for k in keys.jwks()["keys"]}
    assert asyncio.run(keys.rotate(NOW + timedelta(days=1)))
    assert keys.current.kid in published_before
    assert tokens.verify(old, now=NOW)["sub"] == "u1"
    assert len(keys.jwks()["keys"]) == 3
    asyncio.run(keys.rotate(NOW + timedelta(days=2)))
    with pytest.raises(InvalidToken, match="unknown key id"):
        tokens.verify(old, now=NOW)


def test_two_replicas_rotating_at_once_agree_on_one_ring() -> None:
    """Compare-and-swap: of two replicas rotating concurrently, one wins; both then hold
    the same keys and sign with the same kid."""
    store = MemoryKeyStore()
    a, b = KeyRing(store), KeyRing(store)
    asyncio.run(a.ensure(NOW))
    asyncio.run(b.refresh())
    later = NOW + timedelta(days=1)
    assert asyncio.run(a.rotate(later)) is True
    assert asyncio.run(b.rotate(later)) is False
    assert a.current.kid == b.current.kid
    assert {k.kid for k in a.keys} == {k.kid for k in b.keys}


def test_ensure_rotates_only_when_due() -> None:
    """ensure() creates the ring once and rotates after rotate_every."""
    store = MemoryKeyStore()
    keys = KeyRing(store, RotationRules(rotate_every=timedelta(hours=1)))
    asyncio.run(keys.ensure(NOW))
    first = keys.current.kid
    asyncio.run(keys.ensure(NOW + timedelta(minutes=59)))
    assert keys.current.kid == first
    asyncio.run(keys.ensure(NOW + timedelta(minutes=61)))
    assert keys.current.kid != first


def test_rotation_faster_than_token_lifetime_is_refused() -> None:
    """A rotation period shorter than token TTL + verifier cache is a configuration error."""
    with pytest.raises(ValueError, match="rotate_every"):
        RotationRules(token_ttl=timedelta(minutes=15), rotate_every=timedelta(minutes=10))


HIDDEN = [
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u202a",  # LEFT-TO-RIGHT EMBEDDING
    "\u2066",  # LEFT-TO-RIGHT ISOLATE
    "\u2069",  # POP DIRECTIONAL ISOLATE
    "\u200f",  # RIGHT-TO-LEFT MARK
    "\u061c",  # ARABIC LETTER MARK
    "\u200b",  # ZERO WIDTH SPACE
    "\ufeff",  # ZERO WIDTH NO-BREAK SPACE (a BOM)
    "\u00ad",  # SOFT HYPHEN
    "\u0000",
    "\u001b",  # ESCAPE: terminal control sequences
    "\u0085",  # NEXT LINE, a C1 control
    "\u2028",  # LINE SEPARATOR
    "\ue000",  # private use
    "\U000e0041",  # TAG LATIN CAPITAL LETTER A
]


@pytest.mark.parametrize("ch", HIDDEN)
def test_invisible_and_control_characters_are_refused_by_name(ch: str) -> None:
    """Anywhere in the text, for emails and names alike, with the code point named."""
    for check in (refuse_hidden(), refuse_hidden(allow=JOINERS)):
        with pytest.raises(ValueError, match=f"U\\+{ord(ch):04X}"):
            check(f"ada{ch}lovelace")


def test_visible_text_and_a_names_joiners_pass() -> None:
    """Letters of any script, accents and emoji pass; the joiners only where allowed."""
    for text in ("Ada Lovelace", "Zoë Øster-Straße", "名前", "مینا", "🚕"):
        assert refuse_hidden()(text) == text
    persian = "\u0645\u06cc\u200c\u0646\u0627"
    assert refuse_hidden(allow=JOINERS)(persian) == persian
    with pytest.raises(ValueError, match="U\\+200C ZERO WIDTH NON-JOINER"):
        refuse_hidden()(persian)
