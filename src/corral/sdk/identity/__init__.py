"""corral.sdk.identity: who is calling, verified by the service itself.

The gateway checks tokens at the edge, but anything that reaches a service's port could
write the gateway's ``x-corral-claim-*`` headers. So a service trusts no such header: it
verifies the bearer token the gateway forwards against the same providers, issuer,
audiences and algorithms (``CORRAL_IDENTITY``, from the manifest's ``gateway.jwt``),
and answers to the identity it proves::

    from corral.sdk.identity import Caller, Identity, requires_role

    @svc.get("/rides")
    async def my_rides(caller: Caller) -> list[Ride]:          # 401 without a caller
        return await rides_of(caller.subject)

    @svc.get("/admin/rides", dependencies=[Depends(requires_role("admin"))])
    async def all_rides() -> list[Ride]: ...                    # 403 without the role

Calls through ``svc.client`` forward the token, so the next service sees the same
caller. See docs/identity.md.
"""

from typing import TYPE_CHECKING, Any

from corral.sdk.identity._config import IdentityConfig, JwksConfig, ProviderConfig
from corral.sdk.identity._dependencies import (
    Caller,
    OptionalCaller,
    optional_caller,
    requires_role,
    verified_caller,
)
from corral.sdk.identity._errors import InvalidToken, KeysUnavailable
from corral.sdk.identity._identity import Identity, current_identity

if TYPE_CHECKING:
    from corral.sdk.identity._verifier import TokenVerifier

__all__ = [
    "Caller",
    "Identity",
    "IdentityConfig",
    "InvalidToken",
    "JwksConfig",
    "KeysUnavailable",
    "OptionalCaller",
    "ProviderConfig",
    "TokenVerifier",
    "current_identity",
    "optional_caller",
    "requires_role",
    "verified_caller",
]


def __getattr__(name: str) -> Any:
    # PEP 562: the verifier needs PyJWT (and its key set aiohttp), which a service
    # without identity providers never loads.
    if name == "TokenVerifier":
        from corral.sdk.identity._verifier import TokenVerifier

        return TokenVerifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
