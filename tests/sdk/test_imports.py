"""``import corral.sdk`` stays cheap: every instance pays it at start
(bench/startup.py measures it). What only some services use loads when they use it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "alembic", "nats", "aiohttp", "jwt", "cryptography", "rich")
"""Loaded only by services with a database, events, clients or identity providers; rich
not at all (structlog would load it for its console tracebacks: corral.sdk._logging)."""
EXPORTERS = ("opentelemetry.exporter", "opentelemetry.sdk.trace.export")
"""Loaded only when spans are exported."""


def loaded_after(code: str) -> set[str]:
    """Top-level and exporter modules in sys.modules after ``code``, in a fresh Python."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY or m.startswith(EXPORTERS)}


def test_importing_the_sdk_and_making_a_service_loads_nothing_heavy() -> None:
    modules = loaded_after(
        "from corral.sdk import Service\n"
        "svc = Service('greeter')\n"
        "@svc.get('/hello')\n"
        "async def hello() -> dict[str, str]:\n"
        "    return {}\n"
        "svc.app.openapi()"
    )
    assert "corral.sdk" in modules
    assert heavy(modules) == set()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("from corral.sdk import DbSession", "sqlalchemy"),
        ("from corral.sdk.client import ServiceClient", "aiohttp"),
        ("from corral.sdk.identity import TokenVerifier", "jwt"),
        ("from corral.sdk.events import NatsTransport", "nats"),
        ("from corral.sdk.events import outbox", "sqlalchemy"),
    ],
)
def test_what_a_service_uses_is_loaded_when_used(code: str, expected: str) -> None:
    assert expected in {m.split(".")[0] for m in loaded_after(code)}


def test_the_events_package_loads_a_name_when_it_is_used() -> None:
    """The control plane imports the wire format and topology through corral.sdk.events:
    that must not load NATS' client, the ORM or the Events facade (PEP 562 names)."""
    modules = loaded_after("import corral.sdk.events._topology, corral.sdk.events._envelope")
    assert "corral.sdk.events._events" not in modules
    assert "sqlalchemy.orm" not in modules
    assert "nats" not in modules
    import corral.sdk.events

    with pytest.raises(AttributeError, match="Nothing"):
        _ = corral.sdk.events.Nothing


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    import corral.sdk
    import corral.sdk.client
    import corral.sdk.identity

    for module in (corral.sdk, corral.sdk.client, corral.sdk.identity):
        with pytest.raises(AttributeError, match="no attribute 'Nope'"):
            _ = module.Nope


def test_rich_is_not_hidden_from_a_process_that_imported_it() -> None:
    """Only the SDK's own import of structlog goes without rich: a program that loaded
    rich first, and later imports of rich, find it as usual."""
    assert "rich" in loaded_after("import rich\nimport corral.sdk")
    assert "rich.console" in loaded_after("import corral.sdk\nimport rich.console")
