"""Browser logins for the dashboard: one-time login tokens exchanged for sessions.

The admin token never reaches a browser. ``corral dashboard`` (or ``corral up``) asks the
API for a one-time login token and prints a URL carrying it in the *fragment*, which
browsers never send to a server, so it appears in no server log, query string or
Referer. The page posts it once to ``/v1/dashboard/session`` and gets a session in an
HttpOnly, SameSite=Strict cookie. A login token is good for one exchange within
:data:`LOGIN_TTL`; a session lasts :data:`SESSION_TTL`. Both live in memory only, so
they end with the system. Tokens are kept as SHA-256 digests: a lookup reveals nothing
through timing, and a memory dump holds no usable token.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from enum import StrEnum

__all__ = ["LOGIN_TTL", "SESSION_TTL", "BrowserLogins", "LoginRefused", "Refusal"]

LOGIN_TTL = 300.0
SESSION_TTL = 12 * 3600.0
_MAX_PENDING = 64
"""Login tokens outstanding at once; the oldest goes when a new one would exceed it."""


class Refusal(StrEnum):
    UNKNOWN = "unknown"
    EXPIRED = "expired"


class LoginRefused(Exception):
    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class BrowserLogins:
    """One event loop; not thread-safe. ``clock`` is monotonic seconds (tests pass one)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        login_ttl: float = LOGIN_TTL,
        session_ttl: float = SESSION_TTL,
    ) -> None:
        self._clock = clock
        self.login_ttl = login_ttl
        self.session_ttl = session_ttl
        self._logins: dict[str, float] = {}
        self._sessions: dict[str, float] = {}

    def _prune(self, now: float) -> None:
        for table in (self._logins, self._sessions):
            for key in [k for k, expires in table.items() if expires <= now]:
                del table[key]

    def issue(self) -> str:
        """A new one-time login token."""
        now = self._clock()
        self._prune(now)
        while len(self._logins) >= _MAX_PENDING:
            del self._logins[next(iter(self._logins))]
        token = secrets.token_urlsafe(32)
        self._logins[_digest(token)] = now + self.login_ttl
        return token

    def redeem(self, token: str) -> str:
        """Exchange a login token for a new session id; the token is spent either way.
        Raises :class:`LoginRefused` (unknown or already used, or expired)."""
        now = self._clock()
        expires = self._logins.pop(_digest(token), None)
        self._prune(now)
        if expires is None:
            raise LoginRefused(Refusal.UNKNOWN)
        if expires <= now:
            raise LoginRefused(Refusal.EXPIRED)
        session = secrets.token_urlsafe(32)
        self._sessions[_digest(session)] = now + self.session_ttl
        return session

    def valid(self, session: str) -> bool:
        expires = self._sessions.get(_digest(session))
        return expires is not None and expires > self._clock()

    def revoke(self, session: str) -> None:
        self._sessions.pop(_digest(session), None)
