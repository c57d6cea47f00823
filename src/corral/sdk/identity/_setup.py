"""A service's verifier, built at start from ``CORRAL_IDENTITY``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from structlog.typing import FilteringBoundLogger

from corral.sdk.identity._config import IdentityConfig, JwksConfig
from corral.sdk.identity._keys import Fetch, KeySet, check_size, fetch_file, fetch_url
from corral.sdk.identity._verifier import Provider, TokenVerifier

if TYPE_CHECKING:
    from corral.sdk.client import ServiceClient

__all__ = ["build_verifier"]

FETCH_TIMEOUT = 2.0
"""Seconds a key fetch may take (a request waits for the first one)."""


def build_verifier(
    config: IdentityConfig | None,
    *,
    client_for: Callable[[str], ServiceClient],
    log: FilteringBoundLogger,
) -> TokenVerifier | None:
    """None without providers: the service then accepts no identity at all."""
    if config is None or not config.providers:
        return None
    providers = [
        Provider(
            config=provider,
            keys=KeySet(
                _fetch(provider.jwks, client_for),
                provider=provider.name,
                cache_s=provider.cache_s,
                log=log,
            ),
        )
        for provider in config.providers
    ]
    return TokenVerifier(providers)


def _fetch(jwks: JwksConfig, client_for: Callable[[str], ServiceClient]) -> Fetch:
    if jwks.file is not None:
        return fetch_file(jwks.file)
    if jwks.url is not None:
        return fetch_url(jwks.url, timeout=FETCH_TIMEOUT)
    service, path = jwks.service, jwks.path
    assert service is not None  # JwksConfig holds exactly one source

    async def fetch() -> bytes:
        # Through discovery and the resilience policy towards that service, as any call.
        response = await client_for(service).get(path, timeout=FETCH_TIMEOUT)
        response.raise_for_status()
        check_size(len(response.content))
        return response.content

    return fetch
