"""``Response``: what a call through :class:`~corral.sdk.client.ServiceClient` returns."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from typing import Any

from typing_extensions import deprecated
from yarl import URL

from corral.sdk.client._errors import UpstreamError

__all__ = ["Response"]


class Response:
    """A finished response (the body is read; the connection is back in the pool).

    ``status_code``, ``headers``, ``content``, ``text``, ``json()``, ``is_success`` and
    ``raise_for_status()`` read as httpx's do, so code moving from raw httpx keeps working.

    Read-only by convention: a plain slotted class rather than a frozen dataclass, whose
    ``__init__`` goes through ``object.__setattr__`` per field on every call; ``url`` is
    turned into text only when asked for.
    """

    __slots__ = ("_url", "attempts", "content", "headers", "status_code")

    def __init__(
        self,
        status_code: int,
        headers: Mapping[str, str],
        content: bytes,
        url: str | URL,
        attempts: int = 1,
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self._url = url
        self.attempts = attempts
        """Attempts sent for this call, this one included (1 without retries)."""

    @property
    @deprecated("Response.status is now Response.status_code, as in httpx")
    def status(self) -> int:
        """Deprecated alias of :attr:`status_code`."""
        return self.status_code

    @property
    def url(self) -> str:
        url = self._url
        return url if isinstance(url, str) else str(url)

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.url} attempts={self.attempts}>"

    @property
    def ok(self) -> bool:
        """True below 400 (aiohttp's name; httpx's :attr:`is_success` is 2xx only)."""
        return self.status_code < 400

    @property
    def is_success(self) -> bool:
        """True for a 2xx status, as httpx's."""
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def raise_for_status(self) -> Response:
        """Raise :class:`UpstreamError` for a 4xx/5xx status; return self otherwise."""
        if self.status_code >= 400:
            raise UpstreamError(
                f"{self.url} answered {self.status_code}",
                target=self.url,
                attempts=self.attempts,
                status=self.status_code,
                body=self.content,
            )
        return self
