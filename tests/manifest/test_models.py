"""Manifest models: shorthands expand to their long form, and defaults are what the docs say."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from corral.manifest import (
    CheckSpec,
    Condition,
    DatabaseEngine,
    ManifestError,
    RestartPolicy,
    ServiceSpec,
    parse,
)


def service(body: str) -> ServiceSpec:
    """Service ``web`` with ``body``, in a system that also has ``db`` and ``cache``."""
    text = (
        "name: shop\nservices:\n  db:\n    command: x\n  cache:\n    command: x\n  web:\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
    )
    return parse(text, "corral.yaml").spec.services["web"]


SHORTHANDS: list[tuple[str, str, Any]] = [
    ("readiness: /readyz", "readiness", CheckSpec(http="/readyz")),
    ("liveness: /healthz", "liveness", CheckSpec(http="/healthz")),
    ("startup: {tcp: true}", "startup", CheckSpec(tcp=True)),
    (
        "readiness: {command: pg_isready -q}",
        "readiness",
        CheckSpec(command=("pg_isready", "-q")),
    ),
    ("restart: on-failure", "restart.policy", RestartPolicy.ON_FAILURE),
    ("restart: never", "restart.policy", RestartPolicy.NEVER),
    ("restart: {policy: always}", "restart.policy", RestartPolicy.ALWAYS),
    (
        "depends_on: [db, cache]",
        "depends_on",
        {"db": Condition.STARTED, "cache": Condition.STARTED},
    ),
    ("depends_on: {db: healthy}", "depends_on", {"db": Condition.HEALTHY}),
    ("database: postgres", "database.engine", DatabaseEngine.POSTGRES),
    ("database: sqlite", "database.engine", DatabaseEngine.SQLITE),
    ("database: none", "database.engine", DatabaseEngine.NONE),
    ("database: false", "database.engine", DatabaseEngine.NONE),
    ("database: {name: orders}", "database.name", "orders"),
    (
        "env: {DEBUG: true, WORKERS: 4, NAME: x}",
        "env",
        {"DEBUG": "true", "WORKERS": "4", "NAME": "x"},
    ),
    ("resources: {cpu: 500m, memory: 256Mi}", "resources.cpu", 0.5),
    ("resources: {cpu: 500m, memory: 256Mi}", "resources.memory", 256 * 2**20),
    ("stop_grace_period: 1m", "stop_grace_period", 60.0),
    ("restart: {backoff: {initial: 200ms, max: 5s}}", "restart.backoff.initial", 0.2),
    ("restart: {backoff: {initial: 200ms, max: 5s}}", "restart.backoff.max", 5.0),
    ("readiness: {http: /r, period: 250ms, timeout: 2s}", "readiness.period", 0.25),
    ("replicas: 0", "replicas", 0),
    ("port: 8080", "port", 8080),
    ("workdir: services/web", "workdir", "services/web"),
    ("labels: {team: core}", "labels", {"team": "core"}),
]


def attribute(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(
    ("extra", "field", "expected"), SHORTHANDS, ids=[case[0] for case in SHORTHANDS]
)
def test_shorthands_and_values(extra: str, field: str, expected: Any) -> None:
    """Each short spelling means the same as its long form, and values are converted."""
    spec = service(f"command: python app.py\n{extra}\n")
    assert attribute(spec, field) == expected


DEFAULTS: list[tuple[str, Any]] = [
    ("app", None),
    ("workdir", None),
    ("replicas", 1),
    ("port", None),
    ("env", {}),
    ("readiness", None),
    ("liveness", None),
    ("startup", None),
    ("depends_on", {}),
    ("restart.policy", RestartPolicy.ALWAYS),
    ("restart.backoff.initial", 0.1),
    ("restart.backoff.max", 30.0),
    ("restart.backoff.multiplier", 2.0),
    ("restart.backoff.reset_after", 10.0),
    ("stop_grace_period", 10.0),
    ("resources.cpu", None),
    ("resources.memory", None),
    ("labels", {}),
    ("database.engine", None),
    ("database.name", None),
]


@pytest.mark.parametrize(("field", "expected"), DEFAULTS, ids=[case[0] for case in DEFAULTS])
def test_service_defaults(field: str, expected: Any) -> None:
    """A service with only a command gets the documented defaults."""
    assert attribute(service("command: python app.py\n"), field) == expected


CHECK_DEFAULTS: list[tuple[str, Any]] = [
    ("kind", "http"),
    ("period", 1.0),
    ("timeout", 1.0),
    ("failure_threshold", 3),
    ("initial_delay", 0.0),
]


@pytest.mark.parametrize(("field", "expected"), CHECK_DEFAULTS)
def test_check_defaults(field: str, expected: Any) -> None:
    """A check written as a bare path gets the documented timings."""
    check = service("command: x\nreadiness: /readyz\n").readiness
    assert attribute(check, field) == expected


@pytest.mark.parametrize(
    ("body", "kind"),
    [("http: /r", "http"), ("tcp: true", "tcp"), ("command: [/bin/true]", "command")],
)
def test_check_kind(body: str, kind: str) -> None:
    """A check's kind is the one probe it names."""
    assert attribute(service(f"command: x\nliveness: {{{body}}}\n"), "liveness.kind") == kind


def test_system_defaults() -> None:
    """A minimal system has no postgres server and no gateway, events or resilience sections."""
    spec = parse("name: shop\nservices:\n  web:\n    command: x\n", "corral.yaml").spec
    assert spec.name == "shop"
    assert spec.databases.postgres is None
    assert (spec.gateway, spec.events, spec.resilience) == (None, None, None)


def test_app_service() -> None:
    """An app service names module:attribute and needs no command."""
    spec = service("app: shop.web.main:service\n")
    assert (spec.app, spec.command) == ("shop.web.main:service", None)


@pytest.mark.parametrize("name", ["a", "web", "ride-matching", "api2", "x" * 42])
def test_valid_names(name: str) -> None:
    """DNS-label-like names of 1 to 42 characters are accepted for services."""
    text = f"name: shop\nservices:\n  {name}:\n    command: x\n"
    assert list(parse(text, "corral.yaml").spec.services) == [name]


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("Web", "did you mean 'web'?"),
        ("web_api", "did you mean 'web-api'?"),
        ("-web", "did you mean 'web'?"),
        ("web-", "did you mean 'web'?"),
        ("2web", "lower-case letters, digits and '-', starting with a letter"),
        ("x" * 43, "did you mean '" + "x" * 42 + "'?"),
    ],
)
def test_invalid_names_suggest_a_valid_one(name: str, hint: str) -> None:
    """An invalid service name is refused with a valid spelling suggested when one exists."""
    text = f"name: shop\nservices:\n  {name}:\n    command: x\n"
    with pytest.raises(ManifestError) as caught:
        parse(text, "corral.yaml")
    [diagnostic] = caught.value.diagnostics
    assert (diagnostic.message, diagnostic.hint) == (f"invalid name {name!r}", hint)
