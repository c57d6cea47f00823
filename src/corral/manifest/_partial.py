"""Cross-checks on whatever validated, so a manifest with schema errors still has its
references checked and one run reports every problem.

pydantic validates a whole manifest or refuses it. When it refuses, the manifest is cut
into *units*, the entries other entries name or that stand alone (a service, a route, a
JWT provider, a gateway target, a topic, a resilience target), and each is judged by
the errors found in it:

- a unit without errors is validated again without the broken ones and goes through
  the same checks as a valid manifest (:func:`corral.manifest._checks.check_parts`),
  against every service the manifest names, valid or not;
- a unit with an error has only its references checked, on the raw data (a route's
  service, a service's ``depends_on`` and ``calls``, a topic's producers and consumers).
  Nothing else of it can be trusted: a default standing in for a bad value would report
  problems that are not there (a route whose bad ``auth`` became none, a database whose
  bad name became the default one);
- an error in a section outside its units (``gateway.port``) makes all of that
  section's units count as units with an error.

A broken JWT provider still exists by name (an inert stand-in takes its place), so the
routes that use it are not told it is undefined; the routes that remain keep their own
indices in every diagnostic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from corral.manifest._checks import call_problems, check_parts, dependency_problems
from corral.manifest._diagnostics import Diagnostic, KeyPath
from corral.manifest._events import EventsSpec, party_problems
from corral.manifest._gateway import GatewaySpec
from corral.manifest._references import unknown_service
from corral.manifest._resilience import ResilienceSpec
from corral.manifest._service import ServiceSpec
from corral.manifest._source import SourceMap

_ROUTES = ("gateway", "routes")
_INERT_PROVIDER = {"issuer": "-", "audiences": ["-"], "jwks": {"file": "-"}}
"""Stands in for a JWT provider with errors: it exists by name and refers to nothing."""


@dataclass
class _Cut:
    """Where the schema errors are: units with an error, sections with one outside units."""

    units: set[KeyPath] = field(default_factory=set)
    sections: set[str] = field(default_factory=set)

    def broken(self, unit: KeyPath) -> bool:
        return unit in self.units or str(unit[0]) in self.sections


def check_partial(
    data: dict[str, Any], source: SourceMap, error: ValidationError
) -> list[Diagnostic]:
    """The cross-check problems of a manifest whose schema errors are ``error``."""
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        return []  # nothing to check names against; the schema error says why
    names = sorted(services)
    cut = _cut(error)
    valid = {
        name: spec
        for name, raw in services.items()
        if not cut.broken(("services", name)) and (spec := _valid(ServiceSpec, raw)) is not None
    }
    gateway, kept = _gateway(data.get("gateway"), cut)
    events = _section(EventsSpec, data.get("events"), ("events", "topics"), cut)
    resilience = _section(ResilienceSpec, data.get("resilience"), ("resilience", "services"), cut)
    typed = {
        "services": lambda unit: unit[1] in valid,
        "gateway": lambda unit: gateway is not None and not cut.broken(unit),
        "events": lambda unit: events is not None and not cut.broken(unit),
        "resilience": lambda unit: resilience is not None and not cut.broken(unit),
    }
    problems: list[Diagnostic] = []
    for kind, unit, raw in _units(data):
        if not typed[str(unit[0])](unit):
            problems += kind(unit, raw, names, source)
    checked = check_parts(
        valid,
        gateway=gateway,
        events=events,
        resilience=resilience,
        names=names,
        source=_reindexed(source, kept),
    )
    return problems + [_restore_index(problem, kept) for problem in checked]


def _cut(error: ValidationError) -> _Cut:
    cut = _Cut()
    for detail in error.errors(include_url=False):
        loc: KeyPath = tuple(part for part in detail["loc"] if part != "[key]")
        unit = next((loc[: len(p) + 1] for p in _PATTERNS if _matches(p, loc)), None)
        if unit is not None:
            cut.units.add(unit)
        elif loc and loc[0] not in ("name", "services"):
            cut.sections.add(str(loc[0]))  # the system's name is no one's reference
    return cut


def _valid[Model: BaseModel](model: type[Model], raw: Any) -> Model | None:
    try:
        return model.model_validate(raw)
    except ValidationError:  # an error pydantic reported under another path
        return None


def _section[Model: BaseModel](
    model: type[Model], raw: Any, units: KeyPath, cut: _Cut
) -> Model | None:
    """A section (events, resilience) without its broken units, or None if it has none
    or is broken outside them."""
    if not isinstance(raw, dict) or str(units[0]) in cut.sections:
        return None
    entries = raw.get(units[-1])
    if isinstance(entries, dict):
        kept = {key: value for key, value in entries.items() if not cut.broken((*units, key))}
        raw = {**raw, units[-1]: kept}
    return _valid(model, raw)


def _gateway(raw: Any, cut: _Cut) -> tuple[GatewaySpec | None, list[int]]:
    """The gateway without its broken routes and targets, its broken providers replaced
    by stand-ins; and the original index of each route kept."""
    if not isinstance(raw, dict) or "gateway" in cut.sections:
        return None, []
    raw = dict(raw)
    kept: list[int] = []
    if isinstance(routes := raw.get("routes"), list):
        kept = [index for index in range(len(routes)) if not cut.broken((*_ROUTES, index))]
        raw["routes"] = [routes[index] for index in kept]
    if isinstance(providers := raw.get("jwt"), dict):
        raw["jwt"] = {
            name: _INERT_PROVIDER if cut.broken(("gateway", "jwt", name)) else value
            for name, value in providers.items()
        }
    if isinstance(targets := raw.get("services"), dict):
        raw["services"] = {
            name: value
            for name, value in targets.items()
            if not cut.broken(("gateway", "services", name))
        }
    return _valid(GatewaySpec, raw), kept


def _reindexed(source: SourceMap, kept: list[int]) -> SourceMap:
    """``source`` as the checks of the kept routes see it: route ``j`` is ``kept[j]``."""
    moved = {original: new for new, original in enumerate(kept)}

    def renamed(path: KeyPath) -> KeyPath | None:
        if path[:2] != _ROUTES or len(path) < 3 or not isinstance(path[2], int):
            return path
        new = moved.get(path[2])
        return None if new is None else (*_ROUTES, new, *path[3:])

    positions = {}
    for path, position in source.positions.items():
        if (new_path := renamed(path)) is not None:
            positions[new_path] = position
    files = {}
    for path, file in source.files.items():
        if (new_path := renamed(path)) is not None:
            files[new_path] = file
    return SourceMap(source.file, positions, files)


def _restore_index(problem: Diagnostic, kept: list[int]) -> Diagnostic:
    path = problem.path
    if path[:2] != _ROUTES or len(path) < 3 or not isinstance(path[2], int):
        return problem
    return replace(problem, path=(*_ROUTES, kept[path[2]], *path[3:]))


# --- references of a unit, read from the raw data --------------------------------------

Check = Callable[[KeyPath, Any, list[str], SourceMap], list[Diagnostic]]


def _service_references(
    unit: KeyPath, raw: Any, names: list[str], source: SourceMap
) -> list[Diagnostic]:
    if not isinstance(raw, dict):
        return []
    name = str(unit[1])
    problems: list[Diagnostic] = []
    depends_on = raw.get("depends_on")
    if isinstance(depends_on, dict | list):
        targets = [str(target) for target in depends_on if isinstance(target, str)]
        problems += dependency_problems(name, targets, names, source)
    calls = raw.get("calls")
    if isinstance(calls, list) and all(isinstance(target, str) for target in calls):
        problems += call_problems(name, calls, names, source)
    return problems


def _named(unit: KeyPath, name: Any, names: list[str], source: SourceMap) -> list[Diagnostic]:
    """A service named by ``name`` (when it is a name at all) at ``unit``."""
    if not isinstance(name, str):
        return []
    problem = unknown_service(unit, name, names, source)
    return [] if problem is None else [problem]


def _route_references(
    unit: KeyPath, raw: Any, names: list[str], source: SourceMap
) -> list[Diagnostic]:
    if not isinstance(raw, dict):
        return []
    return _named((*unit, "service"), raw.get("service"), names, source)


def _provider_references(
    unit: KeyPath, raw: Any, names: list[str], source: SourceMap
) -> list[Diagnostic]:
    jwks = raw.get("jwks") if isinstance(raw, dict) else None
    if not isinstance(jwks, dict):
        return []
    return _named((*unit, "jwks", "service"), jwks.get("service"), names, source)


def _target_references(
    unit: KeyPath, raw: Any, names: list[str], source: SourceMap
) -> list[Diagnostic]:
    return _named(unit, unit[-1], names, source)


def _topic_references(
    unit: KeyPath, raw: Any, names: list[str], source: SourceMap
) -> list[Diagnostic]:
    if not isinstance(raw, dict):
        return []
    problems: list[Diagnostic] = []
    for role in ("producer", "consumer"):
        parties = raw.get(f"{role}s")
        if isinstance(parties, list) and all(isinstance(party, str) for party in parties):
            problems += party_problems(unit, role, parties, names, source)
    return problems


_UNITS: tuple[tuple[KeyPath, Check], ...] = (
    (("services",), _service_references),
    (_ROUTES, _route_references),
    (("gateway", "jwt"), _provider_references),
    (("gateway", "services"), _target_references),
    (("events", "topics"), _topic_references),
    (("resilience", "services"), _target_references),
)
"""Where units are (each entry of these mappings and lists) and what they refer to."""

_PATTERNS = tuple(where for where, _ in _UNITS)


def _matches(where: KeyPath, loc: KeyPath) -> bool:
    """``loc`` is in a unit of the collection at ``where``."""
    return len(loc) > len(where) and loc[: len(where)] == where


def _units(data: dict[str, Any]) -> Iterator[tuple[Check, KeyPath, Any]]:
    """Every unit of the raw data: its reference check, its key path, its raw value."""
    for where, check in _UNITS:
        entries: Any = data
        for part in where:
            entries = entries.get(part) if isinstance(entries, dict) else None
        if isinstance(entries, dict):
            for key, value in entries.items():
                yield check, (*where, key), value
        elif isinstance(entries, list):
            for index, value in enumerate(entries):
                yield check, (*where, index), value
