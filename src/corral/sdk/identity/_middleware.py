"""Who is calling, decided once per request before any handler runs.

Every ``x-corral-claim-*`` header the request brings is dropped: whoever reached the
service's port could have written them. When the request carries a bearer token that
verifies (see _verifier.py), the claim headers the gateway would have written are put
back, computed from the token itself, so code that reads them keeps working and reads
only verified values; the identity is kept for the ``Caller`` dependency and
:func:`current_identity`, and outgoing calls forward the token (the next service verifies
it in turn).

A request never fails here: without a token, or with one that does not verify, it goes on
with no identity (a route that needs one answers 401 through the dependency, saying why;
a public route, such as a login that a browser calls with an expired token, still
works). The verdict stays in the scope for the dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from corral import contract
from corral.sdk._context import bearer_token_var
from corral.sdk.identity._errors import InvalidToken, KeysUnavailable
from corral.sdk.identity._identity import Identity, claim_header, claim_header_value, identity_var

if TYPE_CHECKING:
    from corral.sdk.identity._verifier import TokenVerifier

__all__ = ["SCOPE_KEY", "IdentityMiddleware", "Unverified"]

SCOPE_KEY = "corral.identity"
"""The request's verdict: an :class:`Identity`, or :class:`Unverified`."""

_AUTHORIZATION = b"authorization"
_CLAIM_PREFIX = contract.CLAIM_HEADER_PREFIX.encode()
_BEARER = b"bearer "


class Unverified:
    """Why the request has no identity; ``unavailable``: the keys could not be fetched
    (the dependency answers 503, not 401)."""

    __slots__ = ("reason", "unavailable")

    def __init__(self, reason: str, *, unavailable: bool = False) -> None:
        self.reason = reason
        self.unavailable = unavailable


NO_TOKEN = Unverified("the request carries no bearer token")
NO_PROVIDERS = Unverified(
    f"this service verifies no tokens ({contract.IDENTITY} is not set: the manifest's "
    "gateway has no jwt providers)"
)


class IdentityMiddleware:
    def __init__(self, app: ASGIApp, *, verifier: Callable[[], TokenVerifier | None]) -> None:
        self.app = app
        self._verifier = verifier
        """The service's verifier once it started (None: no providers, or not started)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        authorization: bytes | None = None
        claims = False
        for name, value in headers:
            if name == _AUTHORIZATION:
                if authorization is None:
                    authorization = value
            elif name.startswith(_CLAIM_PREFIX):
                claims = True
        if claims:
            headers = scope["headers"] = [h for h in headers if not h[0].startswith(_CLAIM_PREFIX)]
        token = _bearer(authorization)
        if token is None:
            scope[SCOPE_KEY] = NO_TOKEN
            await self.app(scope, receive, send)
            return
        verifier = self._verifier()
        if verifier is None:
            scope[SCOPE_KEY] = NO_PROVIDERS
            await self.app(scope, receive, send)
            return
        try:
            identity = await verifier.verify(token)
        except InvalidToken as exc:
            scope[SCOPE_KEY] = Unverified(f"the bearer token is not valid: {exc}")
            await self.app(scope, receive, send)
            return
        except KeysUnavailable as exc:
            scope[SCOPE_KEY] = Unverified(str(exc), unavailable=True)
            await self.app(scope, receive, send)
            return
        scope[SCOPE_KEY] = identity
        scope["headers"] = [*headers, *_claim_headers(identity, verifier)]
        identity_token = identity_var.set(identity)
        bearer_token = bearer_token_var.set(token)
        try:
            await self.app(scope, receive, send)
        finally:
            bearer_token_var.reset(bearer_token)
            identity_var.reset(identity_token)


def _bearer(authorization: bytes | None) -> str | None:
    if authorization is None or authorization[:7].lower() != _BEARER:
        return None
    token = authorization[7:].strip()
    if not token or not token.isascii():
        return None
    return token.decode("ascii")


def _claim_headers(identity: Identity, verifier: TokenVerifier) -> list[tuple[bytes, bytes]]:
    """The headers the gateway writes for this identity's provider (``forward_claims``)."""
    out: list[tuple[bytes, bytes]] = []
    for claim in verifier.forward_claims(identity.provider):
        value = claim_header_value(identity.claims.get(claim))
        # UTF-8, as Envoy writes it; never a value that could end the header early.
        if value is not None and not any(c in value for c in "\r\n\0"):
            out.append((claim_header(claim), value.encode()))
    return out
