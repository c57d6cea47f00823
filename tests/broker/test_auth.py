"""The embedded bus admits only the system's own users: the control plane and the
services that produce or consume a topic (real nats-server, started by the addon)."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
from events.helpers import delete_streams, eventually
from nats.aio.client import Client

from broker.helpers import BASE, Ctx, embedded_bus
from corral import contract
from corral.broker import BrokerAddon, BrokerError, control_url, dlq_list
from corral.plan import Plan

pytestmark = pytest.mark.timeout(60)

WITH_PLAIN = BASE.replace(
    '  tracking: {{command: "true"}}\n',
    '  tracking: {{command: "true"}}\n  plain: {{command: "true"}}\n',
)


async def _quiet(_: Exception) -> None:
    """Refusals are asserted on the exception connect raises."""


async def connect(url: str) -> Client:
    return await nats.connect(
        url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0, error_cb=_quiet
    )


@pytest.fixture
async def running(tmp_path: Path, system: str) -> AsyncIterator[tuple[BrokerAddon, Ctx, Plan]]:
    """The addon's embedded bus for a system with a service that uses no topic."""
    async with embedded_bus(WITH_PLAIN.format(system=system), tmp_path) as running:
        yield running


def passwords(addon: BrokerAddon, plan: Plan) -> set[str]:
    found = {urlsplit(str(addon.url)).password}
    for name in ("rides", "matching", "tracking"):
        found.add(urlsplit(addon.environment(plan.services[name])[contract.NATS_URL]).password)
    assert None not in found
    return {str(p) for p in found}


async def test_a_client_without_the_systems_credentials_is_refused(
    running: tuple[BrokerAddon, Ctx, Plan],
) -> None:
    """No credentials, or a wrong password, and the system's nats-server refuses the
    connection; the URL `corral status` shows carries none."""
    addon, _, _ = running
    assert addon.public_url is not None
    assert urlsplit(addon.public_url).password is None
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect(addon.public_url)
    wrong = addon.public_url.replace("nats://", "nats://corral-control:guess@")
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect(wrong)


async def test_only_services_on_the_bus_get_its_address_each_with_its_own_user(
    running: tuple[BrokerAddon, Ctx, Plan], system: str
) -> None:
    """A service with topics gets NATS_URL with its own user and password, and can
    publish and read its stream; a service without topics gets no NATS_URL at all."""
    addon, _, plan = running
    assert addon.environment(plan.services["plain"]) == {}
    env = addon.environment(plan.services["rides"])
    assert urlsplit(env[contract.NATS_URL]).username == "rides"
    assert sorted(json.loads(env[contract.EVENTS])["topics"]) == ["ride.requested", "ride.updated"]
    assert len(passwords(addon, plan)) == 4  # control plane + three services, all different
    nc = await connect(env[contract.NATS_URL])
    try:
        js = nc.jetstream(timeout=2)
        ack = await js.publish(f"{system}.ride.requested", b"{}")
        assert ack.stream == f"{system}_ride_requested"
        assert (await js.stream_info(ack.stream)).state.messages == 1
    finally:
        await nc.close()


async def test_a_service_cannot_delete_purge_or_reconfigure_streams(
    running: tuple[BrokerAddon, Ctx, Plan], system: str
) -> None:
    """What only provisioning and `corral events dlq purge` need is refused to a service
    user (the server drops the request: no answer); the control plane may."""
    addon, _, plan = running
    stream = f"{system}_ride_requested"
    service = await connect(addon.environment(plan.services["matching"])[contract.NATS_URL])
    try:
        js = service.jetstream(timeout=1)
        with pytest.raises(nats.errors.TimeoutError):
            await js.delete_stream(stream)
        with pytest.raises(nats.errors.TimeoutError):
            await js.purge_stream(stream)
        with pytest.raises(nats.errors.TimeoutError):
            await js.delete_consumer(stream, "matching")
        assert (await js.stream_info(stream)).config.name == stream
    finally:
        await service.close()
    assert addon.url is not None
    control = await connect(addon.url)
    try:
        assert await control.jetstream(timeout=2).purge_stream(stream)
    finally:
        await control.close()


async def test_credentials_are_kept_private_and_never_shown(
    running: tuple[BrokerAddon, Ctx, Plan],
) -> None:
    """The server's config and the control plane's URL are files of mode 0600 in a
    0700 directory; no password appears in the status or in a credential's repr."""
    addon, _, plan = running
    store = plan.state_dir / "nats"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    for name in ("nats-server.conf", "bus.json"):
        assert stat.S_IMODE((store / name).stat().st_mode) == 0o600, name
    shown = json.dumps(addon.status()) + repr(addon._credentials)
    assert addon.status()["nats_authenticated"] is True
    for password in passwords(addon, plan):
        assert password not in shown
    assert control_url(plan.state_dir) == addon.url


async def test_the_dashboard_polls_on_one_connection_that_survives_a_restart(
    running: tuple[BrokerAddon, Ctx, Plan],
) -> None:
    """Every overview uses the addon's one connection (not one per poll); when
    nats-server restarts it reconnects; stop closes it and forgets the control URL."""
    addon, ctx, plan = running

    def control_connections() -> list[dict[str, Any]]:
        found = ctx.monitor("/connz")["connections"] or []
        return [c for c in found if c.get("name") == "corral-control"]

    for _ in range(5):
        overview = await addon.overview()
        assert overview is not None
        assert overview["dead_letters"] == 0
    before = control_connections()
    assert len(before) == 1

    await ctx.restart()

    async def answers_again() -> bool:
        try:
            return await asyncio.wait_for(addon.overview(), 3) is not None
        except Exception:
            return False

    await eventually(answers_again, timeout=30, what="the overview after a restart")
    await addon.overview()
    assert len(control_connections()) == 1
    await addon.stop()
    await eventually(lambda: not control_connections(), timeout=10, what="connection closed")
    assert control_url(plan.state_dir) is None


async def test_dead_letter_commands_need_the_control_url_and_say_so(
    running: tuple[BrokerAddon, Ctx, Plan], system: str
) -> None:
    """`corral events dlq` functions fail at once, saying why, on the bare address, and
    work with the control plane's URL from the state directory."""
    addon, _, plan = running
    with pytest.raises(BrokerError, match="needs the system's credentials") as refused:
        await asyncio.wait_for(dlq_list(str(addon.public_url), system), 10)
    assert "@" not in str(refused.value)
    url = control_url(plan.state_dir)
    assert url is not None
    assert await dlq_list(url, system) == []


async def test_an_external_bus_is_used_with_the_users_credentials_as_given(
    tmp_path: Path, system: str, embedded_nats: Any
) -> None:
    """With `events.url`, the URL (and its credentials) goes unchanged to services with
    topics and to the control plane; the status shows it without them."""
    given = embedded_nats.url.replace("nats://", "nats://someone:s3cret-pw@")
    text = WITH_PLAIN.format(system=system).replace("events:\n", f"events:\n  url: {given}\n")
    async with embedded_bus(text, tmp_path) as (addon, ctx, plan):
        assert not ctx.procs  # no server of its own
        assert addon.environment(plan.services["rides"])[contract.NATS_URL] == given
        assert addon.environment(plan.services["plain"]) == {}
        assert addon.status()["nats_url"] == embedded_nats.url
        assert "s3cret-pw" not in json.dumps(addon.status())
        assert control_url(plan.state_dir) == given
        assert (await addon.overview()) is not None
    await delete_streams(embedded_nats.url, system)
