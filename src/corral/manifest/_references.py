"""Hints for a name that refers to nothing: the closest known name, or the known ones.

Shared by every cross-section check (``depends_on``, gateway, resilience, events) so an
unknown service reads the same wherever it is named.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_hint(name: str, candidates: Iterable[str], otherwise: str) -> str:
    """``did you mean 'x'?`` for the closest candidate, else ``otherwise``."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"did you mean {close[0]!r}?" if close else otherwise


def service_hint(name: str, services: Iterable[str]) -> str:
    """The hint for an unknown service: the closest service, else the list of services."""
    known = sorted(services)
    listing = "services: " + ", ".join(known) if known else "no services are defined"
    return closest_hint(name, known, listing)
