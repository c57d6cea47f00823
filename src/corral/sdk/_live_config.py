"""Live configuration: a service follows its configuration and takes changes in place.

Under ``corral up`` an instance gets ``CORRAL_CONFIG_URL`` and watches its service's
configuration there. For each new version it:

1. works out which variables changed since the configuration it runs (the first event
   carries the one it was started with, so removals count too);
2. validates the whole new configuration with the service's settings model (and the
   runtime contract), exactly as a fresh start would: a failure is reported ``rejected``
   with the service's own :class:`SettingsError` message, and nothing changes;
3. if every changed variable is a settings field marked reloadable
   (``Field(json_schema_extra={"reloadable": True})``), updates those fields in place on
   ``svc.settings`` (and ``os.environ``), runs the ``@svc.on_config_change`` hooks and
   reports ``applied``; otherwise reports ``restart`` and changes nothing (the control
   plane replaces the instance). A changed secret always needs a restart: its value
   never travels over the watch.

A hook that raises undoes the change (fields, environment, hooks run again with the old
values) and the version is reported ``rejected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from corral import contract
from corral.sdk._logging import get_logger
from corral.sdk._settings import SettingsError, load_settings

if TYPE_CHECKING:
    import aiohttp

    from corral.sdk._service import Service

__all__ = ["ConfigChange", "ConfigHook", "ConfigWatcher", "field_variables"]

FIRST_EVENT_WAIT = 5.0
"""How long start-up waits for the watch's first event; the watch carries on after."""


@dataclass(frozen=True)
class ConfigChange:
    """What an ``@svc.on_config_change`` hook is told: the version now in effect, the
    settings fields updated in place, and their previous values."""

    version: int
    fields: frozenset[str]
    previous: Mapping[str, Any] = field(default_factory=dict)


ConfigHook = Callable[[ConfigChange], Awaitable[None]]


def field_variables(settings_cls: type[BaseSettings]) -> dict[str, str]:
    """Environment variable (upper case) -> the settings field it sets, as
    pydantic-settings reads them: the field name with ``env_prefix``, an alias or each
    of an ``AliasChoices``; with ``env_nested_delimiter``, variables below a field."""
    config = settings_cls.model_config
    prefix = str(config.get("env_prefix") or "")
    out: dict[str, str] = {}
    for name, info in settings_cls.model_fields.items():
        alias = info.validation_alias or info.alias
        if isinstance(alias, str):
            names = [alias]
        elif isinstance(alias, AliasChoices):
            names = [choice for choice in alias.choices if isinstance(choice, str)]
        else:
            names = [prefix + name]
        for variable in names:
            out[variable.upper()] = name
    return out


def _reloadable(settings_cls: type[BaseSettings], name: str) -> bool:
    extra = settings_cls.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and extra.get("reloadable") is True


def _field_of(variable: str, fields: Mapping[str, str], delimiter: str | None) -> str | None:
    upper = variable.upper()
    if upper in fields:
        return fields[upper]
    if delimiter:
        head = upper.split(delimiter.upper(), 1)[0]
        return fields.get(head)
    return None


@contextlib.contextmanager
def _environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``changes`` (None removes), restored on the way out. The
    settings model reads the process environment, as it does at start; the block holds no
    ``await``, so no other coroutine of the service sees the candidate values."""
    saved = {key: os.environ.get(key) for key in changes}
    _apply_environment(changes)
    try:
        yield
    finally:
        _apply_environment(saved)


def _apply_environment(values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class ConfigWatcher:
    """Follows ``CORRAL_CONFIG_URL`` for one instance (a lifecycle component)."""

    def __init__(
        self, service: Service[Any], *, url: str, token: str, instance: str, version: int
    ) -> None:
        self.service = service
        self.url = url.rstrip("/")
        self.instance = instance
        self.version = version
        """The version this instance's configuration is at."""
        self._headers = {"authorization": f"Bearer {token}"}
        self._baseline: dict[str, Any] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()
        self._told_variables = False
        """Whether a report carried the settings' variables yet (the first one does)."""
        self._log = get_logger()

    @classmethod
    def from_environment(cls, service: Service[Any]) -> ConfigWatcher | None:
        url = os.environ.get(contract.CONFIG_URL)
        token = os.environ.get(contract.CONFIG_TOKEN)
        if not url or not token:
            return None
        version = os.environ.get(contract.CONFIG_VERSION, "0")
        return cls(
            service,
            url=url,
            token=token,
            instance=service.instance,
            version=int(version) if version.isdigit() else 0,
        )

    async def start(self) -> None:
        # aiohttp is imported here, not with the SDK: only instances under a control
        # plane watch their configuration (and import cost is paid on every start).
        import aiohttp

        from corral.sdk._sse import follow_forever

        self._session = aiohttp.ClientSession(
            headers=self._headers, timeout=aiohttp.ClientTimeout(total=None)
        )
        self._task = asyncio.create_task(
            follow_forever(
                self._follow, what="configuration watch", url=self.url, initial=0.1, maximum=5.0
            ),
            name="corral-config-watch",
        )
        # Ready only once watching, so the control plane can tell a change to this
        # instance rather than restart it; a control plane that does not answer only
        # delays start-up a little (the watch keeps trying).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), FIRST_EVENT_WAIT)

    async def stop(self) -> None:
        from corral.sdk._sse import stop_following

        task, session, self._task, self._session = self._task, self._session, None, None
        await stop_following(task, session)

    async def _follow(self) -> None:
        from corral.sdk._sse import stream_events

        assert self._session is not None
        path = contract.CONFIG_WATCH_PATH.format(instance=self.instance)
        params = {"since": str(self.version)}
        async for event, data in stream_events(self._session, self.url + path, params):
            if event == "config":
                report = await self.handle(json.loads(data))
                self._first.set()
                if not self._told_variables:
                    # The variables this service's settings read: the control plane then
                    # accepts `config set` of those the manifest does not set, and refuses
                    # a misspelled one (docs/config.md).
                    report["variables"] = self._variables()
                await self._report(report)
                self._told_variables = True

    def _variables(self) -> list[str]:
        settings_cls = self.service._settings_cls
        return sorted(field_variables(settings_cls)) if settings_cls is not None else []

    async def handle(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Take one version (see the module docstring); the report to send back."""
        version = int(payload["version"])
        if self._baseline is None:
            self._baseline = dict(payload.get("previous") or payload)
        old_values: Mapping[str, str] = self._baseline.get("values", {})
        new_values: Mapping[str, str] = payload.get("values", {})
        changes: dict[str, str | None] = {
            key: new_values.get(key)
            for key in sorted(set(old_values) | set(new_values))
            if old_values.get(key) != new_values.get(key)
        }
        secrets_changed = self._baseline.get("secrets", {}) != payload.get("secrets", {})
        if not changes and not secrets_changed:
            self._accept(payload)
            return {"version": version, "outcome": "applied"}
        service = self.service
        settings_cls = service._settings_cls
        try:
            with _environment(changes):
                _, candidate = load_settings(
                    service.name, settings_cls, require_database=service.uses_database
                )
        except SettingsError as exc:
            self._log.warning("configuration rejected", version=version, problems=exc.problems)
            return {"version": version, "outcome": "rejected", "problems": [str(exc)]}
        fields = self._live_fields(settings_cls, changes)
        if secrets_changed or fields is None or candidate is None:
            self._log.info(
                "configuration needs a restart", version=version, variables=sorted(changes)
            )
            return {"version": version, "outcome": "restart"}
        try:
            await self._apply(version, changes, fields, candidate)
        except _HookFailed as failed:
            return {"version": version, "outcome": "rejected", "problems": [str(failed)]}
        self._accept(payload)
        self._log.info("configuration applied", version=version, fields=sorted(fields))
        return {"version": version, "outcome": "applied", "fields": sorted(fields)}

    def _accept(self, payload: Mapping[str, Any]) -> None:
        self._baseline = dict(payload)
        self._baseline.pop("previous", None)
        self.version = int(payload["version"])

    def _live_fields(
        self, settings_cls: type[BaseSettings] | None, changes: Mapping[str, str | None]
    ) -> set[str] | None:
        """The reloadable fields these variables set, or None if any needs a restart."""
        if settings_cls is None:
            return None
        variables = field_variables(settings_cls)
        delimiter = settings_cls.model_config.get("env_nested_delimiter")
        fields = set()
        for variable in changes:
            name = _field_of(variable, variables, delimiter)
            if name is None or not _reloadable(settings_cls, name):
                return None
            fields.add(name)
        return fields

    async def _apply(
        self,
        version: int,
        changes: Mapping[str, str | None],
        fields: set[str],
        candidate: BaseSettings,
    ) -> None:
        settings = self.service.settings
        previous = {name: getattr(settings, name) for name in fields}
        saved_env = {key: os.environ.get(key) for key in changes}
        # In place: code holding svc.settings sees the new values (frozen models too).
        settings.__dict__.update({name: getattr(candidate, name) for name in fields})
        _apply_environment(changes)
        change = ConfigChange(version, frozenset(fields), previous)
        try:
            await self._run_hooks(change)
        except _HookFailed:
            settings.__dict__.update(previous)
            _apply_environment(saved_env)
            undo = ConfigChange(
                self.version, frozenset(fields), {n: getattr(candidate, n) for n in fields}
            )
            with contextlib.suppress(_HookFailed):
                await self._run_hooks(undo)
            raise

    async def _run_hooks(self, change: ConfigChange) -> None:
        for hook in self.service._config_hooks:
            try:
                await hook(change)
            except Exception as exc:
                name = getattr(hook, "__name__", repr(hook))
                self._log.error("on_config_change hook failed", hook=name, exc_info=exc)
                raise _HookFailed(f"on_config_change hook {name} failed: {exc!r}") from exc

    async def _report(self, report: Mapping[str, Any]) -> None:
        import aiohttp

        assert self._session is not None
        path = contract.CONFIG_REPORT_PATH.format(instance=self.instance)
        try:
            async with self._session.post(
                self.url + path, json=report, timeout=aiohttp.ClientTimeout(total=5)
            ) as response:
                response.raise_for_status()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The control plane then restarts this instance, which is always safe.
            self._log.warning("configuration report not delivered", error=str(exc))


class _HookFailed(Exception):
    pass
