"""Broker tests reuse the events test helpers (real nats-servers), and share a running
system for the tests that need one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from events.conftest import embedded_nats, nats_url, spans, system, tmp_db  # noqa: F401

from testkit import corral

# --- a running system (`corral up -d`) whose services publish and consume ------------

APPS = Path(__file__).parent / "apps"

SERVICE = (
    "  {name}: {{app: {name}:svc, database: none, readiness: {{http: /readyz, period: 100ms}},"
    ' env: {{PYTHONPATH: "{apps}"}}}}\n'
)
BUS_MANIFEST = (
    "name: bus\nservices:\n"
    + "".join(SERVICE.format(name=n, apps=APPS) for n in ("producer", "consumer", "plain"))
    + "gateway:\n  routes:\n"
    + "".join(
        f"    - {{match: {{prefix: /{n}}}, service: {n}, rewrite: /}}\n"
        for n in ("producer", "consumer", "plain")
    )
    + "events:\n  topics:\n    thing.happened: {producers: [producer], consumers: [consumer]}\n"
)


@dataclass
class BusSystem:
    root: Path
    status: dict[str, Any]

    @property
    def gateway(self) -> str:
        return str(self.status["gateway_url"])


@pytest.fixture(scope="module")
def bus_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BusSystem]:
    """A fresh system (producer -> thing.happened -> consumer, and plain, which uses no
    topic) on its embedded, authenticated NATS; one per test module, taken down after."""
    root = tmp_path_factory.mktemp("bus")
    (root / "corral.yaml").write_text(BUS_MANIFEST)
    up = corral("up", "-d", cwd=root)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        status = json.loads(corral("status", "--json", cwd=root).stdout)
        yield BusSystem(root, status)
    finally:
        corral("down", cwd=root, timeout=60)
