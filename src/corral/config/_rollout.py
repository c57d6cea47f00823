"""Rollout: a committed configuration version reaching a service's running instances.

The change commands (:mod:`corral.config._control`) decide *what* the configuration is;
this module takes a version to the instances and finds out how they took it:

1. the service's plan is reconfigured, so every instance spawned from now on (a scale, a
   crash restart) starts with the version in its environment;
2. the version is published on the service's watch; each serving instance that watches
   (an SDK service) validates it with its own settings model and reports back:
   ``applied`` (every changed variable is a reloadable field, updated in place),
   ``restart`` (some are not) or ``rejected`` (validation failed, with the service's own
   message);
3. applied everywhere: done, same instances. Otherwise, unless rejected, a rolling
   restart (replacement ready first, the old one out of the gateway before SIGTERM).
   An instance that does not watch (a ``command:`` service) or does not answer within
   ``report_timeout`` is restarted: that is always safe.

A rejection, or new instances that do not become ready, raise :class:`Refused`; the
change commands then commit the previous configuration again and :meth:`Rollout.restore`
takes it out the same way (a service already restarted with the refused version is
restarted again).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from corral.config._model import ConfigVersion
from corral.plan import ServicePlan
from corral.runtime.errors import StartError
from corral.runtime.registry import Registry

__all__ = ["Refused", "Report", "Rollout", "RolloutKind", "Services"]


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
    variables: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="The environment variables the service's settings model reads "
        "(sent once, with the first report): settings `corral config set` accepts.",
    )


RolloutKind = Literal["applied live", "rolling restart", "no instances", "not running"]


class Refused(Exception):
    """A service refused a version (``restarted``: its instances already run it)."""

    def __init__(self, service: str, problems: Sequence[str], *, restarted: bool) -> None:
        super().__init__(service)
        self.service = service
        self.problems = tuple(problems)
        self.restarted = restarted


class Rollout:
    """Publishes versions to the services' watches and collects the instances' reports.
    Single event loop; not thread-safe.

    ``current``: the latest version (what a watch sends); ``version``: an earlier one by
    number (KeyError when unknown), for the configuration an instance started with."""

    def __init__(
        self,
        *,
        current: Callable[[], ConfigVersion],
        version: Callable[[int], ConfigVersion],
        report_timeout: float,
    ) -> None:
        self.report_timeout = report_timeout
        self._current = current
        self._version = version
        self._services: Services | None = None
        self._unresponsive: Callable[[], Collection[str]] = frozenset
        self._changed = asyncio.Event()
        """Set (and replaced) whenever a version is published or a report arrives."""
        self._revision: dict[str, int] = {}
        """Per service: the latest version that changed it (what its watch last sent)."""
        self._watching: collections.Counter[str] = collections.Counter()
        self._reports: dict[str, Report] = {}
        self._variables: dict[str, frozenset[str]] = {}
        """Per instance: the variables its settings model reads, as it reported them."""
        self._published: dict[str, tuple[int, float]] = {}
        """Per service: the last version published on its watch, and when."""
        self._received: dict[str, tuple[float, float | None]] = {}
        """Per instance: when its last report arrived, and the propagation latency (from
        the version's publication to the report) when it ran before the publication."""

    def bind(
        self, services: Services, *, unresponsive: Callable[[], Collection[str]] = frozenset
    ) -> None:
        """The runtime to roll changes out to (it is built after this, with our addon);
        ``unresponsive``: instances that cannot answer now (paused by chaos)."""
        self._services = services
        self._unresponsive = unresponsive

    @property
    def runtime(self) -> Services:
        if self._services is None:
            raise RuntimeError("ConfigControl.bind() was not called")
        return self._services

    # --- rolling out ------------------------------------------------------------------

    def start(self, record: ConfigVersion) -> None:
        """Before any service runs: every service is spawned with ``record``."""
        self._revision = dict.fromkeys(record.services, record.version)
        runtime = self.runtime
        for name, config in record.services.items():
            runtime.reconfigure(replace(runtime.service_plan(name), env=config.values))

    async def roll(self, name: str, record: ConfigVersion) -> RolloutKind:
        """Take ``record`` to service ``name``; :class:`Refused` if it will not have it."""
        runtime = self.runtime
        try:
            plan = runtime.service_plan(name)
        except KeyError:
            self.publish(record, [name])
            return "not running"  # a service added to the manifest: it starts at the next up
        runtime.reconfigure(replace(plan, env=record.services[name].values))
        self.publish(record, [name])
        serving = [r.instance for r in runtime.registry.snapshot().serving(name)]
        if not serving:
            return "no instances"
        # A paused instance that watches reads the version when it continues; asking it
        # now would only wait out the report timeout. It takes the version live if the
        # others did (same service, same settings model); if nobody can answer, the
        # rolling restart below is the safe choice.
        later = self._paused_watchers(serving)
        counted = [i for i in serving if i not in later]
        reports = await self.collect([i for i in counted if self._watching[i]], record.version)
        rejected = [r for r in reports.values() if r.outcome == "rejected"]
        if rejected:
            raise Refused(name, rejected[0].problems or ["rejected"], restarted=False)
        if (
            counted
            and len(reports) == len(counted)
            and all(r.outcome == "applied" for r in reports.values())
        ):
            return "applied live"
        try:
            await runtime.restart(name, rolling=True)
        except StartError as exc:
            raise Refused(name, [exc.details()], restarted=True) from None
        return "rolling restart"

    async def restore(
        self, restored: ConfigVersion, done: Mapping[str, RolloutKind], refused: Refused
    ) -> None:
        """Take ``restored`` (the configuration before the refused version, committed
        again) to every service the refused version reached."""
        runtime = self.runtime
        for name in [*done, refused.service]:
            try:
                plan = runtime.service_plan(name)
            except KeyError:
                self.publish(restored, [name])
                continue
            runtime.reconfigure(replace(plan, env=restored.services[name].values))
            self.publish(restored, [name])
            restarted = done.get(name) == "rolling restart" or (
                name == refused.service and refused.restarted
            )
            if restarted:
                # Instances already replaced run the refused version: replace them again.
                await runtime.restart(name, rolling=True)
            else:
                serving = [r.instance for r in runtime.registry.snapshot().serving(name)]
                later = self._paused_watchers(serving)
                asked = [i for i in serving if self._watching[i] and i not in later]
                await self.collect(asked, restored.version)

    def publish(self, record: ConfigVersion, services: Sequence[str]) -> None:
        """Send ``record`` on these services' watches."""
        now = time.time()
        for name in services:
            self._revision[name] = record.version
            self._published[name] = (record.version, now)
        self._wake()

    def _wake(self) -> None:
        # An Event swapped for a fresh one wakes every waiter synchronously: no task to
        # start (and keep a reference to), no lock to take.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()

    def _paused_watchers(self, serving: Sequence[str]) -> set[str]:
        """The instances of ``serving`` that watch but cannot answer now."""
        paused = set(self._unresponsive())
        return {i for i in serving if i in paused and self._watching[i]}

    async def collect(self, instances: Sequence[str], version: int) -> dict[str, Report]:
        """Reports of ``version`` (or later) from ``instances``, as many as arrive within
        ``report_timeout``."""

        def arrived() -> dict[str, Report]:
            return {
                i: self._reports[i]
                for i in instances
                if i in self._reports and self._reports[i].version >= version
            }

        try:
            async with asyncio.timeout(self.report_timeout):
                await self._until(lambda: len(arrived()) == len(instances))
        except TimeoutError:
            pass
        return arrived()

    def reported(self) -> Mapping[str, Report]:
        """The last report of each instance (read-only), of live instances only."""
        return MappingProxyType(self._reports)

    # --- the instances' side ------------------------------------------------------------

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
                await self._until(newer)
                seen = self._revision[service]
                payload = _payload(self._current(), service)
                if since is not None:
                    try:
                        before = self._version(since)
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

    def revisions(self) -> Mapping[str, int]:
        """Per service: the latest version that changed it (what its watch last sent)."""
        return MappingProxyType(self._revision)

    def received(self) -> Mapping[str, tuple[float, float | None]]:
        """Per live instance: when its last report arrived and, when it took a version
        published while it ran, seconds from the publication to its report."""
        return MappingProxyType(self._received)

    async def report(self, instance: str, report: Report) -> None:
        self._reports[instance] = report
        now = time.time()
        record = self.runtime.registry.snapshot().get(instance)
        published = self._published.get(record.service) if record is not None else None
        latency = None
        if (
            record is not None
            and published is not None
            and published[0] == report.version
            and (record.started_at is None or record.started_at <= published[1])
        ):
            latency = max(0.0, now - published[1])
        self._received[instance] = (now, latency)
        if report.variables:
            # Upper case: settings models read the environment case-insensitively.
            self._variables[instance] = frozenset(v.upper() for v in report.variables)
        # Each new instance reports once it watches, so pruning here keeps the maps to
        # the instances the registry still has, however often the system scales.
        live = {r.instance for r in self.runtime.registry.snapshot().instances}
        tables: tuple[dict[str, Any], ...] = (self._reports, self._variables, self._received)
        for table in tables:
            for gone in [i for i in table if i not in live]:
                del table[gone]
        self._wake()

    def variables(self, service: str) -> set[str]:
        """The variables the settings models of ``service``'s live instances read."""
        live = {r.instance for r in self.runtime.registry.snapshot().of(service)}
        return {v for instance in live for v in self._variables.get(instance, ())}


def _payload(record: ConfigVersion, service: str) -> dict[str, Any]:
    config = record.services[service]
    return {
        "version": record.version,
        "service": service,
        "values": config.values,
        "secrets": {key: s.fingerprint for key, s in config.secrets.items()},
    }
