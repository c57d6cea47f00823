"""Live configuration of one running system: changes, versions, and their rollout.

Every change (``set``, ``unset``, ``rollback``, ``apply``, a new manifest at ``up``) is
computed from the latest version, committed as the next one (compare-and-swap, see
:mod:`corral.config._store`) and rolled out to each service whose configuration changed,
in dependency order. Changes are made one at a time: two racing ``set``s both land, the
second computed from the version the first made.

Rolling out version N to a service:

1. its plan is reconfigured, so every instance spawned from now on (a scale, a crash
   restart) starts with N in its environment;
2. N is published on the service's watch; each serving instance that watches (an SDK
   service) validates N with its own settings model and reports back: ``applied`` (every
   changed variable is a reloadable field, updated in place), ``restart`` (some are not)
   or ``rejected`` (validation failed, with the service's own message);
3. applied everywhere: done, same instances. Otherwise, unless rejected, a rolling
   restart (replacement ready first, the old one out of the gateway before SIGTERM).
   An instance that does not watch (a ``command:`` service) or does not answer within
   ``report_timeout`` is restarted: that is always safe.

A rejection, or new instances that do not become ready, stops the rollout: the previous
configuration is committed again as N+1 (kind ``restore``), rolled out the same way (a
service already restarted with N is restarted again), and :class:`ConfigRejectedError`
carries the service's reasons to the caller.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from corral import contract
from corral.config._errors import (
    ConfigRejectedError,
    InvalidChangeError,
    VersionConflictError,
)
from corral.config._layers import manifest_layers
from corral.config._model import (
    ConfigVersion,
    ServiceConfig,
    changed_services,
    rebase,
    set_values,
    unset_values,
)
from corral.config._secrets import Fingerprints, resolve_secrets
from corral.config._store import ConfigStore
from corral.manifest import Manifest
from corral.plan import Plan, ServicePlan
from corral.runtime.errors import NotRunningError, StartError
from corral.runtime.registry import Registry


class Services(Protocol):
    """What a rollout needs of the runtime (the orchestrator)."""

    @property
    def registry(self) -> Registry: ...

    def service_plan(self, service: str) -> ServicePlan: ...

    def reconfigure(self, service: ServicePlan) -> None: ...

    async def restart(self, service: str, *, rolling: bool = False) -> None: ...


class Report(BaseModel):
    """What an instance did with a version it was shown."""

    version: int = Field(ge=1)
    outcome: Literal["applied", "restart", "rejected"]
    problems: list[str] = Field(
        default_factory=list, description="Why it was rejected: the service's own words."
    )
    fields: list[str] = Field(default_factory=list, description="Settings fields changed.")


RolloutKind = Literal["applied live", "rolling restart", "no instances", "not running"]


@dataclass(frozen=True)
class Outcome:
    """What a change did: the version it made (None: nothing changed), how each changed
    service took it, and notes (manifest changes a running system cannot take)."""

    version: ConfigVersion | None
    services: Mapping[str, RolloutKind] = field(default_factory=dict)
    notes: Sequence[str] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version.version if self.version else None,
            "changes": [c.model_dump() for c in self.version.changes] if self.version else [],
            "services": dict(self.services),
            "notes": list(self.notes),
        }


class _Refused(Exception):
    def __init__(self, service: str, problems: Sequence[str], *, restarted: bool) -> None:
        super().__init__(service)
        self.service = service
        self.problems = tuple(problems)
        self.restarted = restarted


Reload = Callable[[], tuple[Manifest, Plan]]
"""Reads the manifest and its overlay again (``corral config apply``)."""


class ConfigControl:
    """The configuration of one running system. Single event loop; not thread-safe."""

    def __init__(
        self,
        *,
        manifest: Manifest,
        plan: Plan,
        store: ConfigStore,
        fingerprints: Fingerprints,
        environ: Mapping[str, str],
        reload: Reload,
        api_url: str,
        author: str,
        report_timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.api_url = api_url
        self.report_timeout = report_timeout
        self._manifest = manifest
        self._plan = plan
        self._fingerprints = fingerprints
        self._environ = environ
        self._reload = reload
        self._author = author
        self._services: Services | None = None
        self._key = secrets.token_bytes(32)
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._current: ConfigVersion | None = None
        self._revision: dict[str, int] = {}
        """Per service: the latest version that changed it (what its watch last sent)."""
        self._secret_values: dict[str, dict[str, str]] = {}
        self._watching: collections.Counter[str] = collections.Counter()
        self._reports: dict[str, Report] = {}
        self._layers: dict[str, ServiceConfig] = {}
        """What the manifest on disk said when last read (start, apply)."""

    def bind(self, services: Services) -> None:
        """The runtime to roll changes out to (it is built after this, with our addon)."""
        self._services = services

    # --- reading ------------------------------------------------------------------

    @property
    def current(self) -> ConfigVersion:
        """The latest version (NotRunningError until ``start``: the system is starting)."""
        if self._current is None:
            raise NotRunningError("the system is starting: its configuration is not loaded yet")
        return self._current

    def has_service(self, service: str) -> bool:
        return service in self.current.services

    # --- start (before any service) ------------------------------------------------

    async def start(self) -> ConfigVersion:
        """Read the secrets, commit the manifest's configuration if it differs from the
        latest version (runtime values set before are kept), and have every service
        spawned with it. A ManifestError if a secret cannot be read."""
        secret_values = resolve_secrets(self._manifest, self._plan, self._environ)
        layers = manifest_layers(self._manifest, self._plan, secret_values, self._fingerprints.of)
        self._layers = layers
        latest = self.store.latest()
        services = rebase(latest.services if latest else {}, layers)
        if latest is not None and services == latest.services:
            record = latest
        else:
            record = self.store.commit(
                expected=latest.version if latest else 0,
                services=services,
                author=self._author,
                kind="up",
                message="corral up"
                + (f" --env {self._manifest.environment}" if self._manifest.environment else ""),
                environment=self._manifest.environment,
            )
        self._secret_values = secret_values
        self._current = record
        self._revision = dict.fromkeys(record.services, record.version)
        runtime = self._runtime()
        for name, config in record.services.items():
            runtime.reconfigure(replace(runtime.service_plan(name), env=config.values))
        return record

    def environment(self, service: ServicePlan) -> dict[str, str]:
        """What every instance of ``service`` gets besides its plain values: its secrets,
        which of its variables they are, and where to watch its configuration."""
        values = self._secret_values.get(service.name, {})
        env = dict(values)
        if values:
            env[contract.SECRET_VARIABLES] = ",".join(sorted(values))
        env[contract.CONFIG_URL] = self.api_url
        env[contract.CONFIG_TOKEN] = self.token_for(service.name)
        env[contract.CONFIG_VERSION] = str(self.current.version)
        return env

    # --- changes ------------------------------------------------------------------------

    async def set(
        self,
        service: str,
        values: Mapping[str, str],
        *,
        author: str,
        message: str = "",
        expected: int | None = None,
    ) -> Outcome:
        if not values:
            raise InvalidChangeError("nothing to set: give KEY=VALUE")

        def change(current: ConfigVersion) -> dict[str, ServiceConfig]:
            return set_values(
                current.services, service, values, version=current.version + 1, author=author
            )

        return await self._change(
            change, kind="set", author=author, message=message, expected=expected
        )

    async def unset(
        self,
        service: str,
        keys: Sequence[str],
        *,
        author: str,
        message: str = "",
        expected: int | None = None,
    ) -> Outcome:
        if not keys:
            raise InvalidChangeError("nothing to unset: give KEY")
        return await self._change(
            lambda current: unset_values(current.services, service, keys),
            kind="unset",
            author=author,
            message=message,
            expected=expected,
        )

    async def rollback(
        self, version: int, *, author: str, message: str = "", expected: int | None = None
    ) -> Outcome:
        """Make version ``version``'s configuration current again, as a new version.
        Secrets keep their current values: only their references are versioned."""
        target = self.store.get(version)
        outcome = await self._change(
            lambda current: self._with_current_secrets(target.services),
            kind="rollback",
            author=author,
            message=message or f"rollback to version {version}",
            expected=expected,
        )
        current = self.current.services
        differ = sorted(
            name
            for name, layer in self._layers.items()
            if name in current and current[name].base != layer.base
        )
        if outcome.version is None or not differ:
            return outcome
        note = (
            f"the manifest sets other values for {', '.join(differ)}: "
            "`corral config apply` would bring them back"
        )
        return replace(outcome, notes=[note])

    async def apply(
        self, *, author: str, message: str = "", expected: int | None = None
    ) -> Outcome:
        """Read the manifest, its overlay and the secrets again and roll out what changed
        in the configuration. Other manifest changes (replicas, routes...) are listed in
        the outcome's notes: they take effect at the next ``corral up``."""
        manifest, plan = self._reload()
        secret_values = resolve_secrets(manifest, plan, self._environ)
        layers = manifest_layers(manifest, plan, secret_values, self._fingerprints.of)
        notes = other_changes(self._plan, plan)
        self._layers = layers

        outcome = await self._change(
            lambda current: rebase(current.services, layers),
            kind="apply",
            author=author,
            message=message or "corral config apply",
            expected=expected,
            secret_values=secret_values,
        )
        return replace(outcome, notes=notes)

    # --- the instances' side --------------------------------------------------------------

    def token_for(self, service: str) -> str:
        """The bearer token of ``service``'s instances for their watch and reports."""
        return hmac.new(self._key, service.encode(), hashlib.sha256).hexdigest()

    def instance_service(self, instance: str, token: str) -> str | None:
        """The service of ``instance`` if ``token`` is that service's, else None."""
        record = self._runtime().registry.snapshot().get(instance)
        if record is None or record.component:
            return None
        expected = self.token_for(record.service).encode()
        if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), expected):
            return None
        return record.service

    async def watch(
        self, instance: str, service: str, since: int | None
    ) -> AsyncIterator[dict[str, Any]]:
        """The service's configuration now, then each version that changes it. The first
        carries ``previous``: the service's configuration at ``since`` (what the
        instance was started with), so it can tell what changed, removals included."""
        self._watching[instance] += 1
        try:
            seen = -1

            def newer() -> bool:
                return self._revision.get(service, 0) > seen

            while True:
                async with self._changed:
                    await self._changed.wait_for(newer)
                seen = self._revision[service]
                payload = _payload(self.current, service)
                if since is not None:
                    try:
                        before = self.store.get(since)
                    except KeyError:
                        before = None
                    if before is not None and service in before.services:
                        payload["previous"] = _payload(before, service)
                    since = None
                yield payload
        finally:
            self._watching[instance] -= 1
            if not self._watching[instance]:
                del self._watching[instance]

    async def report(self, instance: str, report: Report) -> None:
        self._reports[instance] = report
        async with self._changed:
            self._changed.notify_all()

    # --- internals ------------------------------------------------------------------------

    def _runtime(self) -> Services:
        if self._services is None:
            raise RuntimeError("ConfigControl.bind() was not called")
        return self._services

    def _with_current_secrets(
        self, services: Mapping[str, ServiceConfig]
    ) -> dict[str, ServiceConfig]:
        """``services`` with today's secret references and fingerprints (old values are
        not kept anywhere, so they cannot come back) for the services that exist now."""
        current = self.current.services
        return {
            name: config.model_copy(update={"secrets": current[name].secrets})
            for name, config in services.items()
            if name in current
        } | {name: config for name, config in current.items() if name not in services}

    async def _change(
        self,
        change: Callable[[ConfigVersion], dict[str, ServiceConfig]],
        *,
        kind: str,
        author: str,
        message: str,
        expected: int | None,
        secret_values: dict[str, dict[str, str]] | None = None,
    ) -> Outcome:
        async with self._lock:
            before = self.current
            if expected is not None and expected != before.version:
                raise VersionConflictError(expected, before.version)
            services = change(before)
            if services == before.services:
                return Outcome(None)
            after = self.store.commit(
                expected=before.version,
                services=services,
                author=author,
                kind=kind,
                message=message,
                environment=before.environment,
            )
            self._current = after
            secrets_before = self._secret_values
            if secret_values is not None:
                self._secret_values = secret_values
            changed = changed_services(before.services, after.services)
            targets = [s for s in self._plan.start_order if s in changed]
            done: dict[str, RolloutKind] = {}
            try:
                for name in targets:
                    done[name] = await self._roll(name, after)
            except _Refused as refused:
                restored = await self._restore(before, after, secrets_before, done, refused)
                raise ConfigRejectedError(
                    refused.service,
                    after.version,
                    restored.version,
                    [*refused.problems, *_origins(after, refused.service)],
                ) from None
            return Outcome(after, done)

    async def _roll(self, name: str, record: ConfigVersion) -> RolloutKind:
        runtime = self._runtime()
        try:
            plan = runtime.service_plan(name)
        except KeyError:
            self._publish(record, [name])
            return "not running"  # a service added to the manifest: it starts at the next up
        runtime.reconfigure(replace(plan, env=record.services[name].values))
        self._publish(record, [name])
        serving = [r.instance for r in runtime.registry.snapshot().serving(name)]
        if not serving:
            return "no instances"
        watching = [i for i in serving if self._watching[i]]
        reports = await self._collect(watching, record.version)
        rejected = [r for r in reports.values() if r.outcome == "rejected"]
        if rejected:
            raise _Refused(name, rejected[0].problems or ["rejected"], restarted=False)
        if len(reports) == len(serving) and all(r.outcome == "applied" for r in reports.values()):
            return "applied live"
        try:
            await runtime.restart(name, rolling=True)
        except StartError as exc:
            raise _Refused(name, [exc.details()], restarted=True) from None
        return "rolling restart"

    async def _restore(
        self,
        good: ConfigVersion,
        bad: ConfigVersion,
        secret_values: dict[str, dict[str, str]],
        done: Mapping[str, RolloutKind],
        refused: _Refused,
    ) -> ConfigVersion:
        restored = self.store.commit(
            expected=bad.version,
            services=good.services,
            author=bad.author,
            kind="restore",
            message=f"{refused.service} refused version {bad.version}; "
            f"version {good.version} restored",
            environment=good.environment,
        )
        self._current = restored
        self._secret_values = secret_values
        runtime = self._runtime()
        for name in [*done, refused.service]:
            try:
                plan = runtime.service_plan(name)
            except KeyError:
                self._publish(restored, [name])
                continue
            runtime.reconfigure(replace(plan, env=restored.services[name].values))
            self._publish(restored, [name])
            restarted = done.get(name) == "rolling restart" or (
                name == refused.service and refused.restarted
            )
            if restarted:
                # Instances already replaced run the refused version: replace them again.
                await runtime.restart(name, rolling=True)
            else:
                serving = [r.instance for r in runtime.registry.snapshot().serving(name)]
                await self._collect([i for i in serving if self._watching[i]], restored.version)
        return restored

    def _publish(self, record: ConfigVersion, services: Sequence[str]) -> None:
        """Send ``record`` on these services' watches."""
        for name in services:
            self._revision[name] = record.version
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _collect(self, instances: Sequence[str], version: int) -> dict[str, Report]:
        """Reports of ``version`` (or later) from ``instances``, as many as arrive within
        ``report_timeout``."""

        def arrived() -> dict[str, Report]:
            return {
                i: self._reports[i]
                for i in instances
                if i in self._reports and self._reports[i].version >= version
            }

        async with self._changed:
            try:
                async with asyncio.timeout(self.report_timeout):
                    await self._changed.wait_for(lambda: len(arrived()) == len(instances))
            except TimeoutError:
                pass
        return arrived()


def _origins(record: ConfigVersion, service: str) -> list[str]:
    """Where each value the service refused was set: a person fixes it there."""
    config = record.services[service]
    lines = [
        f"  {c.key} removed" if c.new is None else f"  {c.key}={c.new}: {config.source(c.key)}"
        for c in record.changes
        if c.service == service
    ]
    return [f"version {record.version} changed:", *lines] if lines else []


def _payload(record: ConfigVersion, service: str) -> dict[str, Any]:
    config = record.services[service]
    return {
        "version": record.version,
        "service": service,
        "values": config.values,
        "secrets": {key: s.fingerprint for key, s in config.secrets.items()},
    }


_CONFIG_FIELDS = frozenset({"env", "secrets"})


def other_changes(before: Plan, after: Plan) -> list[str]:
    """Differences between two plans besides configuration, for people: a running system
    takes configuration live; everything else needs ``corral up`` again."""
    notes = []
    for name in sorted(set(before.services) - set(after.services)):
        notes.append(f"service {name} was removed: it keeps running until the next corral up")
    for name in sorted(set(after.services) - set(before.services)):
        notes.append(f"service {name} was added: it starts at the next corral up")
    for name in sorted(set(before.services) & set(after.services)):
        old, new = before.services[name], after.services[name]
        fields = [
            f
            for f in old.__dataclass_fields__
            if f not in _CONFIG_FIELDS and getattr(old, f) != getattr(new, f)
        ]
        if fields:
            notes.append(
                f"services.{name}: {', '.join(fields)} changed: takes effect at the next corral up"
            )
    for section in ("gateway", "events", "resilience", "postgres_admin_url"):
        if getattr(before, section) != getattr(after, section):
            notes.append(f"{section} changed: takes effect at the next corral up")
    return notes
