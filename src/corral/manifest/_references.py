"""Hints for a name that refers to nothing: the closest known name, or the known ones.

Shared by every cross-section check (``depends_on``, gateway, resilience, events) so an
unknown service reads the same wherever it is named.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence

from corral.manifest._diagnostics import Diagnostic, KeyPath, shown
from corral.manifest._source import SourceMap


def closest_hint(name: str, candidates: Iterable[str], otherwise: str) -> str:
    """``did you mean 'x'?`` for the closest candidate, else ``otherwise``."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"did you mean {close[0]!r}?" if close else otherwise


def service_hint(name: str, services: Iterable[str]) -> str:
    """The hint for an unknown service: the closest service, else the list of services."""
    known = sorted(services)
    listing = "services: " + ", ".join(known) if known else "no services are defined"
    return closest_hint(name, known, listing)


def unknown_service(
    path: KeyPath, name: str, services: Sequence[str], source: SourceMap
) -> Diagnostic | None:
    """``unknown service 'x'`` at ``path`` when ``name`` is not one of ``services``."""
    if name in services:
        return None
    return source.diagnostic(path, f"unknown service {shown(name)}", service_hint(name, services))


def service_list_problems(
    base: KeyPath,
    names: Sequence[str],
    services: Sequence[str],
    source: SourceMap,
    *,
    unknown: Callable[[str], str],
    rule: str | None = None,
) -> list[Diagnostic]:
    """A list of service names (``calls``, a topic's producers or consumers): each listed
    once, each a service of the system (``unknown(name)`` says what the name was meant
    to be)."""
    problems: list[Diagnostic] = []
    seen: set[str] = set()
    for index, name in enumerate(names):
        path = (*base, index)
        if name in seen:
            problems.append(source.diagnostic(path, f"{shown(name)} is listed twice"))
        seen.add(name)
        if name not in services:
            hint = service_hint(name, services)
            problems.append(source.diagnostic(path, unknown(name), hint, rule=rule))
    return problems
