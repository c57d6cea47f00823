"""Live configuration with real processes: a running system (SDK service, Envoy, the
control-plane API) changed through the API and the CLI, as an operator would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from corral.control import SystemSession, addons_for
from corral.manifest import load
from corral.plan import resolve
from testkit import corral_async

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(180),
]

APPS = Path(__file__).parent / "apps"
API_KEY = "sk-live-4be1d2f0c9a7e6"  # both secrets are unlike anything else in a log
TOKEN = "tok-93e1a0b7f5c2d8"


@dataclass
class Live:
    root: Path
    session: SystemSession
    run: asyncio.Task[None]
    api: httpx.AsyncClient
    gateway: httpx.AsyncClient

    async def set(self, **values: str) -> httpx.Response:
        body = {"values": values, "author": "tester", "message": "from the test"}
        return await self.api.post("/v1/config/services/tunable/set", json=body)

    async def instances(self) -> dict[str, int]:
        """Serving instances of tunable: id -> pid."""
        response = await self.api.get("/v1/instances")
        return {
            r["instance"]: r["pid"]
            for r in response.json()
            if r["service"] == "tunable" and r["ready"] and r["state"] == "running"
        }

    async def answers(self, count: int = 10) -> list[dict[str, Any]]:
        return [(await self.gateway.get("/")).json() for _ in range(count)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    """The system up, two replicas of tests/config/apps/tunable.py behind Envoy."""
    root = tmp_path_factory.mktemp("live")
    (root / "token.txt").write_text(TOKEN + "\n")
    (root / "corral.yaml").write_text(
        f"""name: live
services:
  tunable:
    app: tunable:svc
    workdir: {APPS}
    replicas: 2
    database: none
    stop_grace_period: 3s
    env: {{GREETING: hi, WORKERS: 2, RATE: "0.0"}}
    secrets: {{API_KEY: {{env: LIVE_TEST_API_KEY}}, TOKEN: {{file: token.txt}}}}
gateway:
  routes:
    - {{match: {{prefix: /}}, service: tunable}}
"""
    )
    os.environ["LIVE_TEST_API_KEY"] = API_KEY
    manifest = load(root)
    plan = resolve(manifest, python=sys.executable)
    session = SystemSession(manifest, plan, addons=addons_for(plan))
    run = asyncio.create_task(session.run())
    try:
        ready = asyncio.create_task(session.ready.wait())
        done, _ = await asyncio.wait({run, ready}, timeout=90, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            if run.done():
                run.result()  # raises the start error
            raise TimeoutError("the system did not become ready")
        headers = {"authorization": f"Bearer {session.admin_token}"}
        async with (
            httpx.AsyncClient(base_url=session.api_url, headers=headers, timeout=60) as api,
            httpx.AsyncClient(base_url=str(session.status().gateway_url), timeout=5) as gateway,
        ):
            yield Live(root, session, run, api, gateway)
    finally:
        os.environ.pop("LIVE_TEST_API_KEY", None)
        await session.request_shutdown()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, 60)


async def corral(root: Path, *args: str) -> tuple[int, str, str]:
    """The CLI as a separate process (the API it calls is served by this test's loop)."""
    return await corral_async(*args, "-f", str(root))


async def test_a_reloadable_value_changes_without_a_restart(live: Live) -> None:
    """GREETING is reloadable: every answer has it at once, same instances, same pids."""
    before = await live.instances()
    response = await live.set(GREETING="bonjour")
    assert response.status_code == 200, response.text
    assert response.json()["services"] == {"tunable": "applied live"}
    answers = await live.answers()
    assert {a["greeting"] for a in answers} == {"bonjour"}
    assert {a["instance"] for a in answers} == set(before)
    assert all(a["changes"][-1]["fields"] == ["greeting"] for a in answers)
    assert await live.instances() == before
    status = (await live.api.get("/v1/status")).json()
    assert (status["config_version"], status["config_runtime_values"]) == (2, 1)
    # Each instance reports the version it took live, with its propagation latency.
    code, out, err = await corral(live.root, "config", "instances", "--json")
    assert code == 0, err
    taken = {i["instance"]: i for i in json.loads(out) if i["service"] == "tunable"}
    assert set(taken) == set(before)
    for entry in taken.values():
        assert (entry["version"], entry["outcome"], entry["current"]) == (2, "applied", True)
        assert entry["latency"] is not None
        assert entry["latency"] >= 0


async def test_a_non_reloadable_value_rolls_the_service_with_no_failed_request(
    live: Live,
) -> None:
    """WORKERS is read once at start: the service is rolled, one instance at a time, under
    a steady client through the gateway that sees no failure."""
    before = await live.instances()
    results: list[str] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            try:
                response = await live.gateway.get("/")
                results.append("ok" if response.status_code == 200 else response.text[:200])
            except httpx.HTTPError as exc:
                results.append(repr(exc))

    load = [asyncio.create_task(client()) for _ in range(4)]
    try:
        response = await live.set(WORKERS="3")
    finally:
        stop.set()
        await asyncio.gather(*load)
    assert response.status_code == 200, response.text
    assert response.json()["services"] == {"tunable": "rolling restart"}
    assert [r for r in results if r != "ok"] == []
    assert len(results) > 20
    after = await live.instances()
    assert set(after).isdisjoint(before)
    answers = await live.answers()
    assert {(a["workers"], a["greeting"]) for a in answers} == {(3, "bonjour")}


async def test_an_invalid_value_is_refused_and_the_previous_version_restored(
    live: Live,
) -> None:
    """RATE=2 fails the service's own validation: the CLI says so in the service's words
    and where the value came from; nothing restarted, the previous version restored."""
    before = await live.instances()
    current = (await live.api.get("/v1/config")).json()["version"]
    code, out, err = await corral(live.root, "config", "set", "tunable", "RATE=2", "GREETING=x")
    assert code == 1, out + err
    assert "tunable refused configuration version" in err
    assert "RATE: Input should be less than or equal to 1" in err
    assert f"RATE=2: corral config set (version {current + 1}," in err
    assert await live.instances() == before
    assert {(a["rate"], a["greeting"]) for a in await live.answers()} == {(0.0, "bonjour")}
    history = (await live.api.get("/v1/config/history")).json()
    assert [v["kind"] for v in history[-2:]] == ["set", "restore"]
    shown = (await live.api.get("/v1/config", params={"service": "tunable"})).json()
    assert shown["version"] == current + 2
    assert shown["services"]["tunable"]["RATE"]["value"] == "0.0"  # the manifest's again


async def test_a_misspelled_setting_is_refused_before_anything_changes(live: Live) -> None:
    """`config set tunable RATES=0.5`: the CLI prints the closest setting and the list,
    and no version is made, no instance restarted."""
    before = await live.instances()
    current = (await live.api.get("/v1/config")).json()["version"]
    code, out, err = await corral(live.root, "config", "set", "tunable", "RATES=0.5")
    assert code == 1, out + err
    assert "error: unknown setting: tunable has no setting RATES: did you mean RATE?" in err
    assert "settings of tunable: API_KEY, GREETING, RATE, STYLE, TOKEN, WORKERS" in err
    assert (await live.api.get("/v1/config")).json()["version"] == current
    assert await live.instances() == before


async def test_a_setting_only_the_service_declares_is_accepted(live: Live) -> None:
    """STYLE is a field of tunable's settings model and not in the manifest: the
    instances report it, so `config set` takes it without --new, applied in place."""
    code, out, err = await corral(live.root, "config", "set", "tunable", "STYLE=fancy")
    assert code == 0, out + err
    shown = (await live.api.get("/v1/config", params={"service": "tunable"})).json()
    assert shown["services"]["tunable"]["STYLE"]["value"] == "fancy"
    code, out, err = await corral(live.root, "config", "unset", "tunable", "STYLE")
    assert code == 0, out + err


async def test_a_new_setting_is_added_on_purpose_with_new(live: Live) -> None:
    """`config set tunable EXTRA_FLAG=1 --new` adds a variable nobody declared (without
    --new the same line is refused), as one new version."""
    current = (await live.api.get("/v1/config")).json()["version"]
    code, out, err = await corral(live.root, "config", "set", "tunable", "EXTRA_FLAG=1")
    assert code == 1, out + err
    assert "unknown setting" in err
    code, out, err = await corral(live.root, "config", "set", "tunable", "EXTRA_FLAG=1", "--new")
    assert code == 0, out + err
    shown = (await live.api.get("/v1/config", params={"service": "tunable"})).json()
    assert shown["version"] == current + 1
    assert shown["services"]["tunable"]["EXTRA_FLAG"]["value"] == "1"
    code, out, err = await corral(live.root, "config", "unset", "tunable", "EXTRA_FLAG")
    assert code == 0, out + err


async def test_secrets_reach_the_service_and_nothing_else(live: Live) -> None:
    """The instance has its secrets; no API answer, CLI output, history file or log under
    the state directory holds them; fingerprints stand in."""
    assert all(a["api_key_set"] for a in await live.answers(4))
    answers = [
        (await live.api.get(path)).text
        for path in (
            "/v1/config",
            "/v1/config/history",
            "/v1/config/diff?a=1&b=2",
            "/v1/status",
            "/v1/instances",
            "/v1/logs",
        )
    ]
    code, shown, err = await corral(live.root, "config", "show")
    assert code == 0, err
    assert "secret fp:" in shown
    assert "secret env:LIVE_TEST_API_KEY" in shown
    lines = [entry["line"] for entry in (await live.api.get("/v1/logs")).json()]
    configured = [json.loads(line) for line in lines if '"configured"' in line]
    assert configured
    assert {entry["api_key"] for entry in configured} == {"**********"}  # redacted
    files = [p for p in (live.root / ".corral").rglob("*") if p.is_file()]
    assert any(p.parent.name == "config" for p in files)
    assert any(p.suffix == ".log" for p in files)
    for secret in (API_KEY, TOKEN):
        assert not [p for p in files if secret.encode() in p.read_bytes()]
        assert not [text for text in [*answers, shown] if secret in text]


async def test_history_is_read_from_disk_once_the_system_is_down(live: Live) -> None:
    """After the control plane stopped, the CLI reads every version from the state dir."""
    count = len((await live.api.get("/v1/config/history")).json())
    await live.session.request_shutdown()
    await asyncio.wait_for(live.run, 60)
    code, out, err = await corral(live.root, "config", "history", "--json")
    assert code == 0, err
    history = json.loads(out)
    assert len(history) == count
    assert [v["kind"] for v in history][:2] == ["up", "set"]
