"""Why a token proves nothing. Apart from the verifier and the key set so that the
middleware, which every service runs, can catch them without importing PyJWT and
aiohttp (a service without identity providers never loads them)."""

from __future__ import annotations

__all__ = ["InvalidToken", "KeysUnavailable"]


class InvalidToken(Exception):
    """The token does not prove an identity; the message says why (for the 401)."""


class KeysUnavailable(Exception):
    """The provider's keys could not be fetched, and none are known from before."""
