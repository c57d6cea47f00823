"""``--watch`` with real processes: examples/hello behind Envoy, a request loop running
through the gateway, source files saved on disk, reloads through the control API."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from corral.api import ApiClient
from corral.control import SystemSession, addons_for
from corral.manifest import load
from corral.plan import resolve
from corral.watch import (
    ApiTarget,
    ManifestChanged,
    Reloaded,
    ReloadFailed,
    SourceMap,
    Watcher,
    WatchEvent,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(240),
]

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"


@dataclass
class Traffic:
    """Requests through the gateway, one after another, until stopped."""

    gateway: httpx.AsyncClient
    answers: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            try:
                response = await self.gateway.get("/hello/watch")
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
                continue
            if response.status_code != 200:
                self.failures.append(f"{response.status_code} {response.text[:200]}")
            else:
                self.answers.append(response.json()["message"])

    async def until_answer(self, prefix: str, timeout: float = 60) -> None:
        """Until the last five answers all start with ``prefix``."""
        async with asyncio.timeout(timeout):
            while not (
                len(self.answers) >= 5 and all(a.startswith(prefix) for a in self.answers[-5:])
            ):
                await asyncio.sleep(0.05)


@dataclass
class Live:
    root: Path
    events: list[WatchEvent]
    traffic: Traffic
    session: SystemSession

    async def until(self, kind: type, count: int, timeout: float = 60) -> list[WatchEvent]:
        async with asyncio.timeout(timeout):
            while len(found := [e for e in self.events if isinstance(e, kind)]) < count:
                await asyncio.sleep(0.05)
        return found

    def edit(self, old: str, new: str) -> None:
        app = self.root / "greeter" / "app.py"
        text = app.read_text()
        assert old in text
        app.write_text(text.replace(old, new))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    """examples/hello running from a copy, watched, with traffic through the gateway."""
    root = tmp_path_factory.mktemp("watch") / "hello"
    shutil.copytree(HELLO, root, ignore=shutil.ignore_patterns(".corral", "__pycache__"))
    manifest = load(root)
    plan = resolve(manifest, python=sys.executable)
    session = SystemSession(manifest, plan, addons=addons_for(plan))
    run = asyncio.create_task(session.run())
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        ready = asyncio.create_task(session.ready.wait())
        done, _ = await asyncio.wait({run, ready}, timeout=90, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            if run.done():
                run.result()
            raise TimeoutError("the system did not become ready")
        events: list[WatchEvent] = []
        api = ApiClient(session.api_url, session.admin_token)
        watcher = Watcher(
            SourceMap(plan, [manifest.path]), ApiTarget(api), events.append, root=root
        )
        watcher.reread = lambda: SourceMap(resolve(load(root), python=sys.executable), [root])
        async with httpx.AsyncClient(
            base_url=str(session.status().gateway_url), timeout=10
        ) as gateway:
            traffic = Traffic(gateway)
            tasks = [asyncio.create_task(watcher.run(stop)), asyncio.create_task(traffic.run())]
            await traffic.until_answer("hello")
            yield Live(root, events, traffic, session)
        api.close()
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.request_shutdown()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, 60)


async def test_a_save_swaps_the_code_with_no_failed_request(live: Live) -> None:
    """Saving greeter's code: the gateway answers with the new code; no request failed."""
    live.edit('f"hello, {name}"', 'f"howdy, {name}"')
    await live.traffic.until_answer("howdy")
    reloaded = await live.until(Reloaded, 1)
    assert [e.service for e in reloaded] == ["greeter"]  # front's code did not change
    assert live.traffic.failures == []


async def test_code_that_cannot_start_leaves_the_old_serving(live: Live) -> None:
    """A syntax error: shown once with file and line; the old code answers on; the next
    save that fixes it reloads."""
    live.edit('f"howdy, {name}"', 'f"hiya, {name}"\n\ndef broken(:\n    pass\n')
    failed = await live.until(ReloadFailed, 1)
    assert isinstance(failed[0], ReloadFailed)
    located = failed[0].located
    assert located is not None
    assert located.file == (live.root / "greeter" / "app.py").resolve()
    assert located.line is not None
    assert "SyntaxError" in located.message
    served = len(live.traffic.answers)
    async with asyncio.timeout(30):
        while len(live.traffic.answers) < served + 20:
            await asyncio.sleep(0.05)
    assert set(live.traffic.answers[served:]) == {"howdy, watch"}  # the old code answers on
    live.edit("\n\ndef broken(:\n    pass\n", "\n")
    await live.traffic.until_answer("hiya")
    assert len([e for e in live.events if isinstance(e, ReloadFailed)]) == 1
    assert live.traffic.failures == []


async def test_manifest_edits_apply_as_a_diff(live: Live) -> None:
    """An invalid edit changes nothing and is located; a valid one scales greeter, drops
    the /greet route live and starts a new service, with no failed request."""
    path = live.root / "corral.yaml"
    original = path.read_text()
    path.write_text(original.replace("replicas: 2", "replicas: two"))
    rejected = await live.until(ManifestChanged, 1)
    assert isinstance(rejected[0], ManifestChanged)
    assert rejected[0].outcome.error is not None
    assert "corral.yaml:6:5: services.greeter.replicas" in rejected[0].outcome.error
    assert live.session.status().services["greeter"].replicas == 2

    edited = original.replace("replicas: 2", "replicas: 3")
    edited = edited.replace("    - match: {prefix: /greet}\n      service: front\n", "")
    edited = edited.replace(
        "  front:\n",
        "  extra:\n    app: greeter.app:svc\n    database: none\n  front:\n",
    )
    path.write_text(edited)
    applied = await live.until(ManifestChanged, 2, timeout=120)
    outcome = applied[1].outcome  # type: ignore[attr-defined]
    assert outcome.error is None, outcome
    assert outcome.failed == ()
    status = live.session.status()
    assert status.services["greeter"].ready == 3
    assert status.services["extra"].ready == 1
    async with httpx.AsyncClient(base_url=str(status.gateway_url), timeout=10) as gateway:
        assert (await gateway.get("/greet/x")).status_code == 404
    assert live.traffic.failures == []
