"""The values that must never leave the process, and their redaction.

One process-wide set, filled from the service's settings and the runtime contract
(``CORRAL_SECRET_VARIABLES``, tokens, passwords in URLs), read by every way out: log
lines (:mod:`corral.sdk._logging`) and exported spans (:mod:`corral.sdk._span_redaction`).
Values are never removed: a secret once known stays redacted even after a rotation.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable

__all__ = ["REDACTED", "SECRET_FORMS", "redact", "register_secrets"]

REDACTED = "**********"

_secrets: set[str] = set()
SECRET_FORMS: list[tuple[str, str]] = []
"""``(text, replacement)`` pairs, longest first; empty while there is nothing to redact
(callers test it to skip the work). Changed in place only."""
_lock = threading.Lock()


def register_secrets(values: Iterable[str]) -> None:
    """Add values that must never appear in a log line or span (process-wide)."""
    with _lock:
        for value in values:
            if value and value not in _secrets:
                _secrets.add(value)
                SECRET_FORMS.append((value, REDACTED))
                # As orjson escapes it (= json.dumps without ensure_ascii) and as the
                # standard library's fallback (ASCII only) does.
                for escaped in (
                    json.dumps(value, ensure_ascii=False)[1:-1],
                    json.dumps(value)[1:-1],
                ):
                    if (escaped, REDACTED) not in SECRET_FORMS:
                        SECRET_FORMS.append((escaped, REDACTED))
        # Longest first, so a secret that contains another is replaced whole.
        SECRET_FORMS.sort(key=lambda f: -len(f[0]))


def redact(text: str) -> str:
    """``text`` with every known secret replaced by :data:`REDACTED`."""
    for secret, replacement in SECRET_FORMS:
        if secret in text:
            text = text.replace(secret, replacement)
    return text
