"""The SDK's side of live configuration: what an instance does with each version it is
shown (in process; with the real control plane in tests/config/test_config_live.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import AliasChoices, Field

from corral.sdk import ConfigChange, Service, ServiceSettings
from corral.sdk._live_config import ConfigWatcher, field_variables


class Settings(ServiceSettings):
    greeting: str = Field(default="hello", json_schema_extra={"reloadable": True})
    rate: float = Field(default=0.0, ge=0, le=1, json_schema_extra={"reloadable": True})
    workers: int = Field(default=1, ge=1, le=8)


BASE = {"version": 1, "values": {"GREETING": "hi", "WORKERS": "2"}, "secrets": {"KEY": "fp:1"}}


def version(n: int, *, secrets: dict[str, str] | None = None, **values: str) -> dict[str, Any]:
    return {"version": n, "values": values, "secrets": secrets or {"KEY": "fp:1"}}


@pytest.fixture
def watched(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Service[Settings], ConfigWatcher, list[Any]]]:
    """A service started from BASE's variables, its watcher past the first event. The
    watcher writes os.environ itself: the whole environment is restored afterwards (a
    leaked RATE once reached a system another test started in the same worker)."""
    saved = dict(os.environ)
    monkeypatch.setenv("GREETING", "hi")
    monkeypatch.setenv("WORKERS", "2")
    monkeypatch.delenv("RATE", raising=False)
    svc = Service("tuned", settings=Settings)
    calls: list[Any] = []

    @svc.on_config_change
    async def hook(change: ConfigChange) -> None:
        calls.append(change)

    svc.load_settings()
    watcher = ConfigWatcher(svc, url="http://127.0.0.1:1", token="t", instance="tuned-1", version=1)
    yield svc, watcher, calls
    os.environ.clear()
    os.environ.update(saved)


async def test_the_first_event_of_the_version_started_with_changes_nothing(
    watched: tuple[Service[Settings], ConfigWatcher, list[Any]],
) -> None:
    """The watch's first event, same version as the environment: applied, no hook."""
    _, watcher, calls = watched
    assert await watcher.handle(BASE) == {"version": 1, "outcome": "applied"}
    assert calls == []


async def test_reloadable_fields_are_updated_in_place_and_hooks_run(
    watched: tuple[Service[Settings], ConfigWatcher, list[Any]],
) -> None:
    """Reloadable fields change on the same settings object; hooks get the old values."""
    svc, watcher, calls = watched
    settings = svc.settings
    await watcher.handle(BASE)
    report = await watcher.handle(version(2, GREETING="bonjour", WORKERS="2", RATE="0.25"))
    assert report == {"version": 2, "outcome": "applied", "fields": ["greeting", "rate"]}
    assert svc.settings is settings
    assert (settings.greeting, settings.rate, settings.workers) == ("bonjour", 0.25, 2)
    assert os.environ["GREETING"] == "bonjour"
    assert calls == [
        ConfigChange(2, frozenset({"greeting", "rate"}), {"greeting": "hi", "rate": 0.0})
    ]
    assert watcher.version == 2


async def test_a_variable_removed_since_start_is_seen_through_previous(
    watched: tuple[Service[Settings], ConfigWatcher, list[Any]],
) -> None:
    """The first event's ``previous`` (the version started with) shows a removal: the
    field goes back to its default."""
    svc, watcher, _ = watched
    first = {**version(3, WORKERS="2"), "previous": BASE}
    assert (await watcher.handle(first))["outcome"] == "applied"
    assert svc.settings.greeting == "hello"
    assert "GREETING" not in os.environ


CASES = [
    ("a field that is not reloadable", version(2, GREETING="hi", WORKERS="3"), "restart"),
    ("a variable no field reads", version(2, GREETING="hi", WORKERS="2", OTHER="x"), "restart"),
    (
        "a secret changed",
        version(2, GREETING="hi", WORKERS="2", secrets={"KEY": "fp:2"}),
        "restart",
    ),
]


@pytest.mark.parametrize(("payload", "outcome"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_changes_that_need_a_restart_change_nothing(
    watched: tuple[Service[Settings], ConfigWatcher, list[Any]],
    payload: dict[str, Any],
    outcome: str,
) -> None:
    """Anything but reloadable fields is reported for a restart and left as it is."""
    svc, watcher, calls = watched
    await watcher.handle(BASE)
    assert await watcher.handle(payload) == {"version": 2, "outcome": outcome}
    assert (svc.settings.greeting, svc.settings.workers) == ("hi", 2)
    assert os.environ["WORKERS"] == "2"
    assert "OTHER" not in os.environ
    assert calls == []
    assert watcher.version == 1


async def test_an_invalid_version_is_rejected_with_every_bad_field(
    watched: tuple[Service[Settings], ConfigWatcher, list[Any]],
) -> None:
    """Validation runs as at start: the report is the SettingsError listing each bad
    variable (never its value), and nothing changes."""
    svc, watcher, calls = watched
    await watcher.handle(BASE)
    report = await watcher.handle(version(2, GREETING="hi", WORKERS="99", RATE="2"))
    assert report["outcome"] == "rejected"
    assert report["problems"] == [
        "service 'tuned' cannot start, its settings are invalid:\n"
        "  - RATE: Input should be less than or equal to 1\n"
        "  - WORKERS: Input should be less than or equal to 8"
    ]
    assert (svc.settings.rate, svc.settings.workers) == (0.0, 2)
    assert "RATE" not in os.environ
    assert calls == []


async def test_a_failing_hook_undoes_the_change(
    watched: tuple[Service[Settings], ConfigWatcher, list[Any]],
) -> None:
    """A hook that raises: fields and environment back, hooks told of the undo, rejected."""
    svc, watcher, calls = watched

    @svc.on_config_change
    async def refuse(change: ConfigChange) -> None:
        if change.version == 2:
            raise RuntimeError("cannot take a greeting that long")

    await watcher.handle(BASE)
    report = await watcher.handle(version(2, GREETING="g" * 50, WORKERS="2"))
    assert report["outcome"] == "rejected"
    assert report["problems"] == [
        "on_config_change hook refuse failed: RuntimeError('cannot take a greeting that long')"
    ]
    assert svc.settings.greeting == "hi"
    assert os.environ["GREETING"] == "hi"
    assert [c.version for c in calls] == [2, 1]
    assert calls[1].previous == {"greeting": "g" * 50}


def test_field_variables_follow_pydantic_settings_naming() -> None:
    """Prefix, alias and alias choices map to the field they set, upper case."""

    class Named(ServiceSettings):
        model_config = {**ServiceSettings.model_config, "env_prefix": "shop_"}
        plain: int = 1
        aliased: int = Field(default=1, validation_alias="LEGACY_NAME")
        either: int = Field(default=1, validation_alias=AliasChoices("ONE", "two"))

    assert field_variables(Named) == {
        "SHOP_PLAIN": "plain",
        "LEGACY_NAME": "aliased",
        "ONE": "either",
        "TWO": "either",
    }
