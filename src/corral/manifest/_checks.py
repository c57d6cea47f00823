"""Checks across sections that a single model cannot make on its own.

Each returns diagnostics rather than raising, so one run reports every problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from corral import contract
from corral.manifest._autoscale import autoscale_problems
from corral.manifest._diagnostics import Diagnostic, shown
from corral.manifest._events import EventsSpec, check_events
from corral.manifest._gateway import GatewaySpec, check_gateway
from corral.manifest._references import service_hint, service_list_problems
from corral.manifest._resilience import ResilienceSpec, check_resilience
from corral.manifest._route_shadowing import shadowed_routes
from corral.manifest._secrets import check_secrets
from corral.manifest._service import DatabaseEngine, ServiceSpec
from corral.manifest._source import SourceMap
from corral.manifest._system import SystemSpec

SHARED_DATABASE_RULE = "shared-database"
"""The lint rule a shared database is (a manifest error first: see corral.lint)."""


def dependency_problems(
    name: str, dependencies: Iterable[str], services: list[str], source: SourceMap
) -> list[Diagnostic]:
    """A service depending on itself or on a service the manifest does not have."""
    problems = []
    for dependency in sorted(dependencies):
        path = ("services", name, "depends_on", dependency)
        if dependency == name:
            problems.append(source.diagnostic(path, f"service {name!r} depends on itself"))
        elif dependency not in services:
            hint = service_hint(dependency, services)
            problems.append(
                source.diagnostic(path, f"depends on unknown service {shown(dependency)}", hint)
            )
    return problems


def call_problems(
    name: str, calls: Sequence[str], services: list[str], source: SourceMap
) -> list[Diagnostic]:
    """A declared call to a service the manifest does not have, or one listed twice.
    (A service calling itself is a cycle: ``corral lint`` reports it.)"""
    return service_list_problems(
        ("services", name, "calls"),
        calls,
        services,
        source,
        unknown=lambda target: f"calls unknown service {shown(target)}",
    )


def check_system(spec: SystemSpec, source: SourceMap) -> list[Diagnostic]:
    """Cross-references: dependencies exist, databases are not shared, ports not reused."""
    return check_parts(
        spec.services,
        gateway=spec.gateway,
        events=spec.events,
        resilience=spec.resilience,
        names=sorted(spec.services),
        source=source,
    )


def check_parts(
    services: Mapping[str, ServiceSpec],
    *,
    gateway: GatewaySpec | None,
    events: EventsSpec | None,
    resilience: ResilienceSpec | None,
    names: list[str],
    source: SourceMap,
) -> list[Diagnostic]:
    """:func:`check_system` on the parts of a system, checked against ``names``, the
    services it defines: all of them, or those of a manifest whose other services did
    not validate (see :mod:`corral.manifest._partial`)."""
    problems: list[Diagnostic] = []
    databases: dict[str, str] = {}
    ports: dict[int, str] = {}
    for name, service in sorted(services.items()):
        problems += dependency_problems(name, service.depends_on, names, source)
        problems += call_problems(name, service.calls or (), names, source)
        if name.startswith(contract.COMPONENT_PREFIX):
            problems.append(
                source.diagnostic(
                    ("services", name),
                    f"service names starting with {contract.COMPONENT_PREFIX!r} are reserved "
                    "for Corral's own components",
                    f"did you mean {name.removeprefix(contract.COMPONENT_PREFIX)!r}?",
                )
            )
        for variable in sorted(set(service.env) & contract.RESERVED):
            problems.append(
                source.diagnostic(
                    ("services", name, "env", variable),
                    f"{variable} is set by Corral for each instance and cannot be overridden",
                )
            )
        problems += check_secrets(name, service.env, service.secrets, source)
        consumed = frozenset(
            topic
            for topic, spec in (events.topics.items() if events is not None else ())
            if name in spec.consumers
        )
        problems += autoscale_problems(name, service.autoscale, consumed, source)
        if service.database.engine is not DatabaseEngine.NONE:
            db_name = service.database.name or name.replace("-", "_")
            owner = databases.setdefault(db_name, name)
            if owner != name:
                problems.append(
                    source.diagnostic(
                        ("services", name, "database"),
                        f"database {db_name!r} is already the database of service {owner!r}",
                        "each service owns its own database; share data through its API or events",
                        rule=SHARED_DATABASE_RULE,
                    )
                )
        if service.port is not None:
            holder = ports.setdefault(service.port, name)
            if holder != name:
                problems.append(
                    source.diagnostic(
                        ("services", name, "port"),
                        f"port {service.port} is already used by service {holder!r}",
                    )
                )
    problems.extend(check_events(events, names, source))
    problems.extend(check_resilience(resilience, names, source))
    problems.extend(check_gateway(gateway, names, source))
    if gateway is not None:
        problems.extend(shadowed_routes(gateway.routes, source))
    return problems
