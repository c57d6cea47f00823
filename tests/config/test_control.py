"""ConfigControl's rollout decisions against an in-memory runtime and scripted instances
(the same paths with real processes and Envoy are in test_config_live.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from config_helpers import (
    ENVIRON,
    MANIFEST,
    applied,
    control_for,
    needs_restart,
    rejects_debug,
    running,
)

from corral import contract
from corral.config import (
    ConfigRejectedError,
    InvalidChangeError,
    Report,
    UndeclaredSettingError,
    VersionConflictError,
)
from corral.manifest import ManifestError, parse
from corral.plan import resolve
from corral.runtime.registry import InstanceRecord, InstanceState


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
            control.set("web", {"A": "1"}, author="ada", new=True),
            control.set("web", {"B": "2"}, author="bob", new=True),
        )
    assert {one.version.version, two.version.version} == {2, 3}  # type: ignore[union-attr]
    assert {"A", "B"} <= set(control.current.services["web"].values)


async def test_a_change_from_an_old_version_is_refused(tmp_path: Path) -> None:
    """--if-version: a change computed from version 1 fails once version 2 exists."""
    async with running(tmp_path, applied) as (control, _, _):
        await control.set("web", {"A": "1"}, author="ada", expected=1, new=True)
        with pytest.raises(VersionConflictError):
            await control.set("web", {"B": "1"}, author="bob", expected=1, new=True)
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


async def test_a_change_that_leaves_values_as_they_are_rolls_nothing_out(tmp_path: Path) -> None:
    """Setting a value the manifest already gives pins it (a new version) but changes no
    instance; the next change builds on that version."""
    async with running(tmp_path, applied) as (control, runtime, instances):
        pinned = await control.set("web", {"LEVEL": "info"}, author="ada")
        assert pinned.version is not None
        assert pinned.version.changes == []
        assert pinned.services == {}
        after = await control.set("web", {"LEVEL": "warn"}, author="ada")
    assert after.version is not None
    assert after.version.version == 3
    assert runtime.restarts == []
    assert [p["version"] for p in instances[0].seen] == [1, 3]


async def test_changes_wait_for_the_system_to_start(tmp_path: Path) -> None:
    """Before start (the API is up before the services), a change is refused as 'not
    running', which the API answers 409."""
    from corral.runtime.errors import NotRunningError

    control, _ = control_for(tmp_path)
    with pytest.raises(NotRunningError, match="the system is starting"):
        await control.set("web", {"A": "1"}, author="ada")


async def test_a_misspelled_setting_is_refused_with_the_closest_declared_one(
    tmp_path: Path,
) -> None:
    """`LEVLE` is a typo of web's LEVEL: refused before anything is written or restarted,
    naming the closest declared setting and the service's settings."""
    async with running(tmp_path, applied) as (control, runtime, _):
        with pytest.raises(UndeclaredSettingError) as caught:
            await control.set("web", {"LEVLE": "debug"}, author="ada")
    error = caught.value
    assert error.service == "web"
    assert error.keys == ("LEVLE",)
    assert "did you mean LEVEL?" in str(error)
    assert {"LEVEL", "WORKERS", "API_KEY"} <= set(error.declared)
    assert control.current.version == 1
    assert runtime.restarts == []


async def test_a_variable_nobody_declared_takes_new(tmp_path: Path) -> None:
    """new=True adds a variable neither the manifest nor the service declares; once set
    it is declared (a later set needs no new=True)."""
    async with running(tmp_path, applied) as (control, _, _):
        outcome = await control.set("web", {"FEATURE_X": "on"}, author="ada", new=True)
        assert outcome.version is not None
        again = await control.set("web", {"FEATURE_X": "off"}, author="ada")
    assert again.version is not None
    assert control.current.services["web"].values["FEATURE_X"] == "off"


async def test_settings_a_running_service_reports_are_declared(tmp_path: Path) -> None:
    """An SDK instance's first report names the variables its settings model reads:
    those are settings of the service even when the manifest does not set them."""
    async with running(tmp_path, None) as (control, runtime, _):
        await control.report(
            "web-1",
            Report(version=1, outcome="applied", variables=["RATE", "greeting", "COLOUR"]),
        )
        outcome = await control.set("web", {"RATE": "0.5", "GREETING": "hi"}, author="ada")
        assert outcome.version is not None
        with pytest.raises(UndeclaredSettingError, match="did you mean RATE"):
            await control.set("web", {"RATES": "1"}, author="ada")
        # Contract variables a manifest may point elsewhere are always settable.
        assert (await control.set("web", {contract.LOG_FORMAT: "console"}, author="ada")).version
        runtime.registry.remove("web-1")  # gone: what it reported no longer counts
        with pytest.raises(UndeclaredSettingError):
            await control.set("web", {"COLOUR": "red"}, author="ada")
