"""Broker: manifest section and plan, provisioning (idempotent, drift), the embedded
server as a supervised component, the catalog."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from events.helpers import delete_streams

from broker.helpers import BASE, embedded_bus, plan_of
from corral import contract
from corral.broker import build_catalog, provision, server_config
from corral.manifest import ManifestError, parse
from corral.plan import resolve


@pytest.mark.parametrize(
    ("yaml", "message", "line"),
    [
        ("    Ride.Req: {}\n", "invalid topic name 'Ride.Req'", 21),
        ("    x.y: {consumers: [matchin]}\n", "consumer 'matchin' is not a service", 21),
        ("    x.y: {retention: workqueue, consumers: [matching, tracking]}\n", "workqueue", 21),
        ("    x.y: {max_bytes: 1Mi, max_msgs: 3}\n", "set max_bytes or max_msgs, not both", 21),
        (
            "    x.y: {delivery: {max_deliveries: 2, backoff: [1s, 2s]}}\n",
            "backoff has 2 delays",
            21,
        ),
        ("    x.y: {retention: forever}\n", "forever", 21),
        ("    x.y: {partitions: 3}\n", "partitions only apply", 21),
    ],
)
def test_manifest_errors_are_located(yaml: str, message: str, line: int) -> None:
    """Bad events sections give a diagnostic naming the line and the problem."""
    with pytest.raises(ManifestError) as caught:
        plan_of("sys", yaml)
    found = [d for d in caught.value.diagnostics if message in str(d)]
    assert found, caught.value.render()
    assert found[0].line == line


def test_plan_is_resolved_and_sorted() -> None:
    """The plan applies delivery defaults, sorts topics and consumers, sets partitions."""
    events = plan_of("sys")
    assert [t.name for t in events.topics] == ["ride.requested", "ride.updated"]
    requested = events.topic("ride.requested")
    assert requested.consumers == ("matching", "tracking")
    assert (requested.max_age, requested.max_bytes) == (86400.0, 1024 * 1024)
    assert (requested.delivery.max_deliveries, requested.delivery.backoff) == (4, (1.0, 2.0))
    assert events.topic("ride.updated").partitions == 2


def test_server_config_syncs_always() -> None:
    """The embedded server's config fsyncs before acknowledging and listens on loopback."""
    text = server_config(port=1, monitor_port=2, store_dir=Path("/s"), name="x")
    assert "sync_interval: always" in text
    assert 'listen: "127.0.0.1:1"' in text


@pytest.fixture
async def cleanup(nats_url: str, system: str) -> AsyncIterator[None]:
    yield
    await delete_streams(nats_url, system)


async def test_provisioning_idempotent_and_reports_drift(
    nats_url: str, system: str, cleanup: None
) -> None:
    """Provisioning twice changes nothing; a changed manifest updates what JetStream
    allows and reports the rest as drift."""
    events = plan_of(system)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        first = await provision(js, events)
        assert f"{system}_ride_requested" in first.created
        assert f"{system}_ride_updated/tracking-p1" in first.created
        again = await provision(js, events)
        assert again.created == []
        assert again.updated == []
        assert again.drift == []
        changed = parse(
            BASE.format(system=system)
            .replace("max_age: 24h", "max_age: 1h")
            .replace("retention: interest", "retention: limits")
            .replace("max_deliveries: 4", "max_deliveries: 6"),
            Path("/srv/corral.yaml"),
        )
        changed_events = resolve(changed, python="python").events
        assert changed_events is not None
        report = await provision(js, changed_events)
        drift = {(d.stream, d.consumer, d.field): d for d in report.drift}
        assert drift[(f"{system}_ride_requested", None, "max_age")].updated
        assert not drift[(f"{system}_ride_updated", None, "retention")].updated
        assert drift[(f"{system}_ride_requested", "matching", "max_deliver")].updated
        info = await js.stream_info(f"{system}_ride_requested")
        assert info.config.max_age == 3600
        consumer = await js.consumer_info(f"{system}_ride_requested", "matching")
        assert consumer.config.max_deliver == 7
    finally:
        await nc.close()


async def test_addon_starts_embedded_server_and_provisions(tmp_path: Path, system: str) -> None:
    """Without a URL the addon runs nats-server (JetStream, store under .corral/nats),
    provisions streams, and gives instances NATS_URL and their CORRAL_EVENTS."""
    async with embedded_bus(BASE.format(system=system), tmp_path) as (addon, _, plan):
        assert addon.embedded
        assert (tmp_path / ".corral" / "nats" / "nats-server.conf").exists()
        env = addon.environment(plan.services["matching"])
        assert env[contract.NATS_URL].startswith("nats://matching:")
        topics = json.loads(env[contract.EVENTS])["topics"]
        assert sorted(topics) == ["ride.requested"]
        assert topics["ride.requested"]["max_deliveries"] == 4
        assert addon.status()["events_provisioning"]["created"]
        assert addon.url is not None
        nc = await nats.connect(addon.url)
        assert (await nc.jetstream().stream_info(f"{system}_ride_updated")).config.subjects == [
            f"{system}.ride.updated.*"
        ]
        await nc.close()


def test_catalog_is_asyncapi_3_with_payload_schemas() -> None:
    """The catalog lists channels, send/receive operations and payload schemas."""
    events = plan_of("sys")
    doc = build_catalog(
        events,
        {"ride.requested": {"type": "object", "properties": {"ride_id": {"type": "string"}}}},
        url="nats://127.0.0.1:4222",
    )
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["ride.requested"]["address"] == "sys.ride.requested"
    assert "tracking.receive.ride.updated" in doc["operations"]
    assert doc["operations"]["rides.send.ride.requested"]["action"] == "send"
    payload = doc["components"]["messages"]["ride.requested"]["payload"]
    assert payload["properties"]["data"]["properties"]["ride_id"] == {"type": "string"}
