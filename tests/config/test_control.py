"""ConfigControl's rollout decisions against an in-memory runtime and scripted instances
(the same paths with real processes and Envoy are in test_live.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from corral import contract
from corral.config import (
    ConfigControl,
    ConfigRejectedError,
    ConfigStore,
    Fingerprints,
    InvalidChangeError,
    Report,
    VersionConflictError,
)
from corral.manifest import ManifestError, parse
from corral.plan import Plan, ServicePlan, resolve
from corral.runtime.errors import StartError
from corral.runtime.registry import InstanceRecord, InstanceState, Registry

MANIFEST = """\
name: shop
services:
  web:
    command: python web.py
    replicas: 2
    env: {LEVEL: info, WORKERS: "2"}
    secrets: {API_KEY: {env: SHOP_API_KEY}}
  api:
    command: python api.py
"""
ENVIRON = {"SHOP_API_KEY": "sk-live-0123456789"}

Decide = Callable[[dict[str, Any]], Report | None]


@dataclass
class FakeRuntime:
    """The slice of the orchestrator a rollout uses, recording what it was asked."""

    plan: Plan
    registry: Registry = field(default_factory=Registry)
    restarts: list[str] = field(default_factory=list)
    fail_restart: bool = False
    plans: dict[str, ServicePlan] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.plans = dict(self.plan.services)

    def service_plan(self, service: str) -> ServicePlan:
        return self.plans[service]

    def reconfigure(self, service: ServicePlan) -> None:
        self.plans[service.name] = service

    async def restart(self, service: str, *, rolling: bool = False) -> None:
        assert rolling
        self.restarts.append(service)
        if self.fail_restart:
            self.fail_restart = False
            raise StartError(service, "crash loop: exit 2", instance=f"{service}-9")


class Instance:
    """A watching instance whose answer to each version is scripted by ``decide``."""

    def __init__(self, control: ConfigControl, name: str, service: str, decide: Decide) -> None:
        self.seen: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._run(control, name, service, decide))

    async def _run(self, control: ConfigControl, name: str, service: str, decide: Decide) -> None:
        async for payload in control.watch(name, service, since=None):
            self.seen.append(payload)
            report = decide(payload)
            if report is not None:
                await control.report(name, report)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def applied(payload: dict[str, Any]) -> Report:
    return Report(version=payload["version"], outcome="applied")


def needs_restart(payload: dict[str, Any]) -> Report:
    return Report(version=payload["version"], outcome="restart")


def rejects_debug(payload: dict[str, Any]) -> Report:
    if payload["values"].get("LEVEL") == "debug":
        problem = "service 'web' cannot start, its settings are invalid:\n  - LEVEL: bad"
        return Report(version=payload["version"], outcome="rejected", problems=[problem])
    return applied(payload)


def control_for(
    tmp_path: Path, runtime: FakeRuntime | None = None
) -> tuple[ConfigControl, FakeRuntime]:
    manifest = parse(MANIFEST, tmp_path / "corral.yaml")
    plan = resolve(manifest, python="python3")
    runtime = runtime or FakeRuntime(plan)
    control = ConfigControl(
        manifest=manifest,
        plan=plan,
        store=ConfigStore(tmp_path / "config"),
        fingerprints=Fingerprints(tmp_path / "config" / "fingerprint.key"),
        environ=ENVIRON,
        reload=lambda: (manifest, plan),
        api_url="http://127.0.0.1:1",
        author="ada",
        report_timeout=2.0,
    )
    control.bind(runtime)
    return control, runtime


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, decide: Decide | None
) -> AsyncIterator[tuple[ConfigControl, FakeRuntime, list[Instance]]]:
    """A started control with web's two instances serving (and watching, with ``decide``)."""
    control, runtime = control_for(tmp_path)
    await control.start()
    instances = []
    for name in ("web-1", "web-2"):
        runtime.registry.put(
            InstanceRecord("web", name, "127.0.0.1", 1, InstanceState.RUNNING, ready=True)
        )
        if decide is not None:
            instances.append(Instance(control, name, "web", decide))
    await asyncio.sleep(0)
    try:
        yield control, runtime, instances
    finally:
        for instance in instances:
            await instance.close()


async def test_start_commits_the_manifest_and_spawns_services_with_it(tmp_path: Path) -> None:
    """Version 1 is the manifest's configuration; instances get their secrets and watch."""
    control, runtime = control_for(tmp_path)
    record = await control.start()
    assert record.version == 1
    assert record.kind == "up"
    assert runtime.plans["web"].env == {"LEVEL": "info", "WORKERS": "2"}
    env = control.environment(runtime.plans["web"])
    assert env["API_KEY"] == ENVIRON["SHOP_API_KEY"]
    assert env[contract.SECRET_VARIABLES] == "API_KEY"
    assert env[contract.CONFIG_VERSION] == "1"
    assert env[contract.CONFIG_TOKEN] == control.token_for("web") != control.token_for("api")
    assert record.services["web"].secrets["API_KEY"].fingerprint.startswith("fp:")
    assert ENVIRON["SHOP_API_KEY"] not in record.model_dump_json()


async def test_a_secret_that_cannot_be_read_points_at_its_reference(tmp_path: Path) -> None:
    """A secret's variable missing from the environment is a ManifestError at its line."""
    control, _ = control_for(tmp_path)
    control._environ = {}
    with pytest.raises(ManifestError) as caught:
        await control.start()
    assert str(caught.value.diagnostics[0]).endswith(
        "corral.yaml:7:15: services.web.secrets.API_KEY: cannot read secret API_KEY "
        "(env:SHOP_API_KEY): the environment variable SHOP_API_KEY is not set"
    )


async def test_runtime_values_survive_a_restart_of_the_control_plane(tmp_path: Path) -> None:
    """A second start on the same store keeps runtime values and makes no new version."""
    async with running(tmp_path, applied) as (control, _, _):
        await control.set("web", {"LEVEL": "debug"}, author="ada")
    again, runtime = control_for(tmp_path)
    record = await again.start()
    assert record.version == 2
    assert runtime.plans["web"].env["LEVEL"] == "debug"


async def test_every_instance_applies_live_so_nothing_restarts(tmp_path: Path) -> None:
    """All instances report applied: the change is done, no restart."""
    async with running(tmp_path, applied) as (control, runtime, instances):
        outcome = await control.set("web", {"LEVEL": "warn"}, author="bob", message="quieter")
    assert outcome.version is not None
    assert outcome.services == {"web": "applied live"}
    assert runtime.restarts == []
    assert runtime.plans["web"].env["LEVEL"] == "warn"  # later spawns get it too
    assert [p["values"]["LEVEL"] for p in instances[0].seen] == ["info", "warn"]
    assert instances[0].seen[-1]["secrets"] == {
        "API_KEY": outcome.version.services["web"].secrets["API_KEY"].fingerprint
    }


async def test_a_change_an_instance_cannot_take_live_rolls_the_service(tmp_path: Path) -> None:
    """One instance reports restart: the service gets a rolling restart."""
    async with running(tmp_path, needs_restart) as (control, runtime, _):
        outcome = await control.set("web", {"WORKERS": "4"}, author="bob")
    assert outcome.services == {"web": "rolling restart"}
    assert runtime.restarts == ["web"]


async def test_instances_that_do_not_watch_are_restarted(tmp_path: Path) -> None:
    """A serving instance with no watch (a command: service) can only be restarted."""
    async with running(tmp_path, None) as (control, runtime, _):
        outcome = await control.set("web", {"LEVEL": "warn"}, author="bob")
    assert outcome.services == {"web": "rolling restart"}
    assert runtime.restarts == ["web"]


async def test_a_rejected_version_is_undone_and_says_why(tmp_path: Path) -> None:
    """A rejection restores the previous configuration as a new version, restarts
    nothing, and the error carries the service's message and where the value was set."""
    async with running(tmp_path, rejects_debug) as (control, runtime, instances):
        with pytest.raises(ConfigRejectedError) as caught:
            await control.set("web", {"LEVEL": "debug"}, author="bob")
    error = caught.value
    assert (error.service, error.version, error.restored) == ("web", 2, 3)
    assert error.problems == (
        "service 'web' cannot start, its settings are invalid:\n  - LEVEL: bad",
        "version 2 changed:",
        "  LEVEL=debug: corral config set (version 2, bob)",
    )
    assert runtime.restarts == []
    assert runtime.plans["web"].env["LEVEL"] == "info"
    assert control.current.version == 3
    assert control.current.kind == "restore"
    assert control.current.services == control.store.get(1).services
    assert [p["values"]["LEVEL"] for p in instances[0].seen] == ["info", "debug", "info"]


async def test_new_instances_that_fail_stop_the_rollout_and_are_replaced_again(
    tmp_path: Path,
) -> None:
    """The rolling restart fails (new instances crash): the previous configuration is
    restored and the service restarted again, so no instance keeps the refused one."""
    async with running(tmp_path, needs_restart) as (control, runtime, _):
        runtime.fail_restart = True
        with pytest.raises(ConfigRejectedError) as caught:
            await control.set("web", {"WORKERS": "0"}, author="bob")
    assert caught.value.problems[0] == "web-9: crash loop: exit 2"
    assert runtime.restarts == ["web", "web"]
    assert runtime.plans["web"].env["WORKERS"] == "2"


async def test_racing_sets_both_land(tmp_path: Path) -> None:
    """Two sets at once: the second is computed from the version the first made."""
    async with running(tmp_path, applied) as (control, _, _):
        one, two = await asyncio.gather(
            control.set("web", {"A": "1"}, author="ada"),
            control.set("web", {"B": "2"}, author="bob"),
        )
    assert {one.version.version, two.version.version} == {2, 3}  # type: ignore[union-attr]
    assert {"A", "B"} <= set(control.current.services["web"].values)


async def test_a_change_from_an_old_version_is_refused(tmp_path: Path) -> None:
    """--if-version: a change computed from version 1 fails once version 2 exists."""
    async with running(tmp_path, applied) as (control, _, _):
        await control.set("web", {"A": "1"}, author="ada", expected=1)
        with pytest.raises(VersionConflictError):
            await control.set("web", {"B": "1"}, author="bob", expected=1)
    assert "B" not in control.current.services["web"].values


async def test_rollback_brings_back_values_and_says_when_the_manifest_differs(
    tmp_path: Path,
) -> None:
    """rollback N: N's configuration comes back as a new version (unchanged: no version);
    after a manifest edit was applied, the outcome says `apply` would bring it back."""
    async with running(tmp_path, applied) as (control, _, _):
        await control.set("web", {"LEVEL": "warn"}, author="ada")
        outcome = await control.rollback(1, author="bob")
        assert outcome.version is not None
        assert outcome.version.kind == "rollback"
        assert not outcome.notes
        assert control.current.services["web"].values["LEVEL"] == "info"
        assert (await control.rollback(1, author="bob")).version is None

        edited = parse(MANIFEST.replace('WORKERS: "2"', 'WORKERS: "3"'), tmp_path / "corral.yaml")
        control._reload = lambda: (edited, resolve(edited, python="python3"))
        applied_edit = await control.apply(author="ada")
        assert [c.key for c in applied_edit.version.changes] == ["WORKERS"]  # type: ignore[union-attr]
        back = await control.rollback(1, author="bob")
    assert control.current.services["web"].values["WORKERS"] == "2"
    assert back.notes == [
        "the manifest sets other values for web: `corral config apply` would bring them back"
    ]


async def test_secrets_cannot_be_set_at_run_time(tmp_path: Path) -> None:
    """Setting a secret's variable is refused before anything is written."""
    async with running(tmp_path, applied) as (control, _, _):
        with pytest.raises(InvalidChangeError, match="API_KEY is a secret of web"):
            await control.set("web", {"API_KEY": "sk"}, author="ada")
    assert control.current.version == 1


async def test_instance_tokens_are_good_for_their_own_service_only(tmp_path: Path) -> None:
    """web's token opens web's instances and nothing else."""
    async with running(tmp_path, None) as (control, runtime, _):
        runtime.registry.put(InstanceRecord("api", "api-1", "127.0.0.1", 2, InstanceState.RUNNING))
        web = control.token_for("web")
        assert control.instance_service("web-1", web) == "web"
        assert control.instance_service("api-1", web) is None
        assert control.instance_service("web-7", web) is None
        assert control.instance_service("web-1", "guess") is None
