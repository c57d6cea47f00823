"""A real system (`corral up -d`) on its embedded NATS: services publish and consume
with their own credentials, anyone else is refused, and the passwords stay in their
private files."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import nats
import pytest

from broker.conftest import BusSystem, corral

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def _quiet(_: Exception) -> None:
    """The refusal is asserted on the exception connect raises."""


def test_services_publish_and_consume_through_the_authenticated_bus(
    bus_system: BusSystem,
) -> None:
    """An event published by producer reaches consumer, both on their own bus users."""
    published = httpx.post(f"{bus_system.gateway}/producer/emit/7", timeout=10)
    assert published.status_code == 200, published.text
    deadline = time.monotonic() + 30
    seen: list[int] = []
    while time.monotonic() < deadline and 7 not in seen:
        seen = httpx.get(f"{bus_system.gateway}/consumer/seen", timeout=10).json()["seen"]
    assert 7 in seen


async def test_a_client_without_credentials_is_refused_by_the_running_bus(
    bus_system: BusSystem,
) -> None:
    """The address `corral status` shows has no credentials, and the system's
    nats-server refuses a client that brings none."""
    url = bus_system.status["nats_url"]
    assert bus_system.status["nats_authenticated"] is True
    assert "@" not in url
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0, error_cb=_quiet
        )


def test_only_services_with_topics_get_the_bus(bus_system: BusSystem) -> None:
    """producer and consumer have NATS_URL; plain, which uses no topic, does not."""
    has = {
        name: httpx.get(f"{bus_system.gateway}/{name}/bus", timeout=10).json()["has_nats_url"]
        for name in ("producer", "consumer", "plain")
    }
    assert has == {"producer": True, "consumer": True, "plain": False}


def _passwords(store: Path) -> set[str]:
    text = (store / "nats-server.conf").read_text()
    found = set(re.findall(r'"password": "([^"]+)"', text))
    assert len(found) == 3  # the control plane, producer and consumer
    return found


def test_bus_passwords_appear_nowhere_but_their_private_files(bus_system: BusSystem) -> None:
    """Once the system has worked, no bus password is in `corral status`, the logs or
    any other file of the state directory, except the server's config and bus.json."""
    httpx.post(f"{bus_system.gateway}/producer/emit/8", timeout=10)
    state = bus_system.root / ".corral"
    passwords = _passwords(state / "nats")
    shown = corral("status", "--json", cwd=bus_system.root).stdout
    shown += corral("logs", cwd=bus_system.root).stdout
    assert json.loads(corral("status", "--json", cwd=bus_system.root).stdout)["system"] == "bus"
    private = {state / "nats" / "nats-server.conf", state / "nats" / "bus.json"}
    for path in state.rglob("*"):
        if path.is_file() and path not in private:
            shown += path.read_bytes().decode("utf-8", "replace")
    for password in passwords:
        assert password not in shown
