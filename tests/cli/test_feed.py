"""``corral up -d``'s registry feed against the real API, served by uvicorn on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from corral.api import create_app
from corral.cli._feed import RegistryFeed
from corral.runtime.registry import InstanceRecord, InstanceState, Registry, Snapshot

TOKEN = "admin-token"


class _Target:
    """The one part of a control target the registry's routes read."""

    def __init__(self) -> None:
        self.registry = Registry()


@dataclass
class _Api:
    url: str
    target: _Target
    loop: asyncio.AbstractEventLoop
    server: uvicorn.Server

    def put(self, instance: str, *, ready: bool) -> None:
        record = InstanceRecord(
            service="web", instance=instance, host="127.0.0.1", port=1,
            state=InstanceState.RUNNING, ready=ready,
        )  # fmt: skip
        done = asyncio.run_coroutine_threadsafe(self._put(record), self.loop)
        done.result(timeout=10)

    async def _put(self, record: InstanceRecord) -> None:
        self.target.registry.put(record)


@pytest.fixture
def api() -> Iterator[_Api]:
    async def shutdown() -> None:
        return None

    target = _Target()
    app = create_app(
        target,  # type: ignore[arg-type]
        admin_token=TOKEN, discovery_token="discovery", request_shutdown=shutdown,
    )  # fmt: skip
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),))
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.02)
        assert server.started
        yield _Api(f"http://127.0.0.1:{port}", target, loop, server)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        if not thread.is_alive():
            loop.close()


def _wait(feed: RegistryFeed, until: int) -> Snapshot:
    for _ in range(200):
        snapshot = feed.next(timeout=0.05)
        if snapshot is not None and snapshot.version >= until:
            return snapshot
    raise AssertionError(f"no snapshot of version {until}")


def test_the_feed_gives_each_newer_registry(api: _Api) -> None:
    feed = RegistryFeed(api.url, TOKEN)
    try:
        first = _wait(feed, 0)  # the registry now, at once
        api.put("web-1", ready=False)
        api.put("web-1", ready=True)
        newest = _wait(feed, first.version + 2)
        assert [(r.instance, r.ready) for r in newest.instances] == [("web-1", True)]
        assert not feed.ended
    finally:
        feed.close()


def test_a_refused_token_ends_the_feed(api: _Api) -> None:
    """The waiting command then asks the registry itself (and sees the refusal)."""
    feed = RegistryFeed(api.url, "wrong")
    try:
        for _ in range(200):
            assert feed.next(timeout=0.05) is None
            if feed.ended:
                break
        assert feed.ended
    finally:
        feed.close()
