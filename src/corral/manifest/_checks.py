"""Checks across sections that a single model cannot make on its own.

Each returns diagnostics rather than raising, so one run reports every problem.
"""

from __future__ import annotations

import difflib

from corral import contract
from corral.manifest._diagnostics import Diagnostic
from corral.manifest._events import check_events
from corral.manifest._gateway import check_gateway
from corral.manifest._resilience import check_resilience
from corral.manifest._service import DatabaseEngine
from corral.manifest._source import SourceMap
from corral.manifest._system import SystemSpec


def check_system(spec: SystemSpec, source: SourceMap) -> list[Diagnostic]:
    """Cross-references: dependencies exist, databases are not shared, ports not reused."""
    problems: list[Diagnostic] = []
    names = sorted(spec.services)
    databases: dict[str, str] = {}
    ports: dict[int, str] = {}
    for name, service in sorted(spec.services.items()):
        for dependency in sorted(service.depends_on):
            path = ("services", name, "depends_on", dependency)
            if dependency == name:
                problems.append(source.diagnostic(path, f"service {name!r} depends on itself"))
            elif dependency not in spec.services:
                close = difflib.get_close_matches(dependency, names, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"services: {', '.join(names)}"
                problems.append(
                    source.diagnostic(path, f"depends on unknown service {dependency!r}", hint)
                )
        for variable in sorted(set(service.env) & contract.RESERVED):
            problems.append(
                source.diagnostic(
                    ("services", name, "env", variable),
                    f"{variable} is set by Corral for each instance and cannot be overridden",
                )
            )
        if service.database.engine is not DatabaseEngine.NONE:
            db_name = service.database.name or name.replace("-", "_")
            owner = databases.setdefault(db_name, name)
            if owner != name:
                problems.append(
                    source.diagnostic(
                        ("services", name, "database"),
                        f"database {db_name!r} is already the database of service {owner!r}",
                        "each service owns its own database; share data through its API or events",
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
    problems.extend(check_events(spec.events, names, source))
    problems.extend(check_resilience(spec.resilience, names, source))
    return problems + check_gateway(spec.gateway, names, source)
