"""Live configuration of one running system: the change commands and their versions.

Every change (``set``, ``unset``, ``rollback``, ``apply``, a new manifest at ``up``) is
computed from the latest version, committed as the next one (compare-and-swap, see
:mod:`corral.config._store`) and rolled out to each service whose configuration changed,
in dependency order, by :mod:`corral.config._rollout`. Changes are made one at a time:
two racing ``set``s both land, the second computed from the version the first made.

A service that refuses a version (a rejection, or new instances that do not become
ready) stops the rollout: the previous configuration is committed again as the next
version (kind ``restore``) and rolled out the same way, and
:class:`ConfigRejectedError` carries the service's reasons to the caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, Field

from corral import contract
from corral.config._errors import (
    ConfigRejectedError,
    InvalidChangeError,
    VersionConflictError,
)
from corral.config._layers import manifest_layers
from corral.config._model import (
    Change,
    ConfigVersion,
    ServiceConfig,
    changed_services,
    check_declared,
    rebase,
    set_values,
    unset_values,
)
from corral.config._rollout import Refused, Report, Rollout, RolloutKind, Services
from corral.config._secrets import Fingerprints, resolve_secrets
from corral.config._store import ConfigStore
from corral.manifest import Manifest
from corral.plan import Plan, ServicePlan
from corral.runtime.errors import NotRunningError


@dataclass(frozen=True)
class Outcome:
    """What a change did: the version it made (None: nothing changed), how each changed
    service took it, and notes (manifest changes a running system cannot take)."""

    version: ConfigVersion | None
    services: Mapping[str, RolloutKind] = field(default_factory=dict)
    notes: Sequence[str] = ()

    def to_model(self) -> ConfigOutcome:
        return ConfigOutcome(
            version=self.version.version if self.version else None,
            changes=list(self.version.changes) if self.version else [],
            services=dict(self.services),
            notes=list(self.notes),
        )


class ConfigOutcome(BaseModel):
    """A change's answer (``POST /v1/config/...``, ``corral config set`` ...): the model
    the API declares in its OpenAPI, the client parses and the CLI prints."""

    version: int | None = Field(description="The version it made; null: nothing changed.")
    changes: list[Change] = Field(description="What differs from the version before.")
    services: dict[str, RolloutKind] = Field(description="How each changed service took it.")
    notes: list[str] = Field(description="Manifest changes a running system cannot take.")


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
        self._manifest = manifest
        self._plan = plan
        self._fingerprints = fingerprints
        self._environ = environ
        self._reload = reload
        self._author = author
        self._key = secrets.token_bytes(32)
        self._lock = asyncio.Lock()
        self._current: ConfigVersion | None = None
        self._secret_values: dict[str, dict[str, str]] = {}
        self.rollout = Rollout(
            current=lambda: self.current, version=store.get, report_timeout=report_timeout
        )
        """Takes committed versions to the running instances."""
        self._layers: dict[str, ServiceConfig] = {}
        """What the manifest on disk said when last read (start, apply)."""

    def bind(
        self, services: Services, *, unresponsive: Callable[[], Collection[str]] = frozenset
    ) -> None:
        """The runtime to roll changes out to (it is built after this, with our addon);
        ``unresponsive``: instances that cannot answer now (paused by chaos)."""
        self.rollout.bind(services, unresponsive=unresponsive)

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
        self.rollout.start(record)
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
        new: bool = False,
    ) -> Outcome:
        """Runtime values for ``service``. A variable that is not one of its settings
        (see :func:`corral.config._model.declared`) is refused, naming the closest, unless
        ``new``: a typo would otherwise be kept and roll the service for nothing."""
        if not values:
            raise InvalidChangeError("nothing to set: give KEY=VALUE")

        def change(current: ConfigVersion) -> dict[str, ServiceConfig]:
            services = set_values(
                current.services, service, values, version=current.version + 1, author=author
            )
            if not new:
                reported = self.rollout.variables(service)
                check_declared(current.services[service], service, values, reported)
            return services

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
        record = self.rollout.runtime.registry.snapshot().get(instance)
        if record is None or record.component:
            return None
        expected = self.token_for(record.service).encode()
        if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), expected):
            return None
        return record.service

    def watch(
        self, instance: str, service: str, since: int | None
    ) -> AsyncIterator[dict[str, Any]]:
        """The service's configuration now, then each version that changes it (see
        :meth:`Rollout.watch`)."""
        return self.rollout.watch(instance, service, since)

    async def report(self, instance: str, report: Report) -> None:
        await self.rollout.report(instance, report)

    # --- internals ------------------------------------------------------------------------

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
                    done[name] = await self.rollout.roll(name, after)
            except Refused as refused:
                restored = await self._restore(before, after, secrets_before, done, refused)
                raise ConfigRejectedError(
                    refused.service,
                    after.version,
                    restored.version,
                    [*refused.problems, *_origins(after, refused.service)],
                ) from None
            return Outcome(after, done)

    async def _restore(
        self,
        good: ConfigVersion,
        bad: ConfigVersion,
        secret_values: dict[str, dict[str, str]],
        done: Mapping[str, RolloutKind],
        refused: Refused,
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
        await self.rollout.restore(restored, done, refused)
        return restored


def _origins(record: ConfigVersion, service: str) -> list[str]:
    """Where each value the service refused was set: a person fixes it there."""
    config = record.services[service]
    lines = [
        f"  {c.key} removed" if c.new is None else f"  {c.key}={c.new}: {config.source(c.key)}"
        for c in record.changes
        if c.service == service
    ]
    return [f"version {record.version} changed:", *lines] if lines else []


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
