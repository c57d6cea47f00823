"""Discovery: service name -> base URLs of its serving instances.

The mode comes from ``CORRAL_DISCOVERY`` (the runtime contract), so the same code runs
everywhere:

- ``registry+http://127.0.0.1:PORT`` (``corral up``): the orchestrator's registry. An
  initial snapshot by GET before the first call, then the server-sent-event watch, cached
  in-process; only serving instances (ready and running). A lost watch reconnects with
  jittered backoff and keeps the last snapshot meanwhile.
- ``dns`` or ``dns:PORT`` (Kubernetes, Compose): ``http://<service>:<port>`` (port 80
  unless given); the platform's DNS and service load balancing do the rest.
- ``static``: ``CORRAL_URL_<SERVICE>`` only.

``CORRAL_URL_<SERVICE>`` overrides the mode for that one service in every mode.
Resolvers are :class:`Resolver`; tests pass :class:`StaticResolver` with a mapping.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp

from corral import contract
from corral.sdk._sse import follow_forever, stop_following, stream_events
from corral.sdk.client._errors import NoInstancesError

__all__ = [
    "DnsResolver",
    "RegistryResolver",
    "Resolver",
    "StaticResolver",
    "resolver_from_env",
]

REGISTRY_PATH = "/v1/registry"
WATCH_PATH = "/v1/registry/watch"


class Resolver(Protocol):
    async def start(self) -> None:
        """Be ready to answer (e.g. fetch the first snapshot). Idempotent."""

    async def stop(self) -> None: ...

    def endpoints(self, service: str) -> tuple[str, ...]:
        """Base URLs (``http://host:port``) of the service's serving instances."""
        ...


def _overrides(environ: Mapping[str, str]) -> dict[str, str]:
    prefix = contract.SERVICE_URL_PREFIX
    return {key: value.rstrip("/") for key, value in environ.items() if key.startswith(prefix)}


class StaticResolver:
    """Fixed URLs: ``CORRAL_URL_<SERVICE>`` variables, or an explicit mapping."""

    def __init__(
        self,
        urls: Mapping[str, str | tuple[str, ...]] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._env = _overrides(os.environ if environ is None else environ)
        self._urls = {
            name: (value,) if isinstance(value, str) else tuple(value)
            for name, value in (urls or {}).items()
        }

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def endpoints(self, service: str) -> tuple[str, ...]:
        if service in self._urls:
            return self._urls[service]
        url = self._env.get(contract.service_url_variable(service))
        if url is None:
            raise NoInstancesError(
                f"no URL for service {service!r}: set {contract.service_url_variable(service)}",
                target=service,
            )
        return (url,)


class DnsResolver:
    """``http://<service>:<port>``: Kubernetes Service and Compose names."""

    def __init__(self, port: int = 80, *, environ: Mapping[str, str] | None = None) -> None:
        self.port = port
        self._env = _overrides(os.environ if environ is None else environ)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def endpoints(self, service: str) -> tuple[str, ...]:
        url = self._env.get(contract.service_url_variable(service))
        if url is not None:
            return (url,)
        return (f"http://{service}:{self.port}",) if self.port != 80 else (f"http://{service}",)


class RegistryResolver:
    """Follows the orchestrator's registry through its watch endpoint."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        environ: Mapping[str, str] | None = None,
        reconnect_initial: float = 0.1,
        reconnect_max: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"authorization": f"Bearer {token}"} if token else {}
        self._env = _overrides(os.environ if environ is None else environ)
        self._serving: dict[str, tuple[str, ...]] = {}
        self.version = -1
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self._reconnect = (reconnect_initial, reconnect_max)
        self.changed = asyncio.Event()
        """Set (and cleared by whoever waits) each time a snapshot is applied."""

    async def start(self) -> None:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                self._session = aiohttp.ClientSession(
                    headers=self._headers, timeout=aiohttp.ClientTimeout(total=None)
                )
                await self._fetch()
            except BaseException as exc:
                self._started.set_exception(exc)
                self._started = None
                raise
            self._task = asyncio.create_task(self._watch(), name="corral-registry-watch")
            self._started.set_result(None)
        else:
            await asyncio.shield(self._started)

    async def stop(self) -> None:
        task, session, self._task, self._session = self._task, self._session, None, None
        await stop_following(task, session)
        self._started = None

    def endpoints(self, service: str) -> tuple[str, ...]:
        # per call: the override names are built only when there are overrides at all
        if self._env:
            url = self._env.get(contract.service_url_variable(service))
            if url is not None:
                return (url,)
        found = self._serving.get(service)
        if not found:
            raise NoInstancesError(
                f"no serving instance of {service!r} in the registry", target=service
            )
        return found

    # -- snapshots ---------------------------------------------------------------------
    def apply(self, snapshot: Mapping[str, Any]) -> None:
        """Take a registry snapshot (``{"version", "instances": [...]}``)."""
        serving: dict[str, list[str]] = {}
        for record in snapshot.get("instances", ()):
            if record.get("ready") and record.get("state") == "running":
                url = f"http://{record['host']}:{record['port']}"
                serving.setdefault(str(record["service"]), []).append(url)
        self._serving = {name: tuple(urls) for name, urls in serving.items()}
        self.version = int(snapshot.get("version", self.version))
        self.changed.set()

    async def _fetch(self) -> None:
        assert self._session is not None
        async with self._session.get(
            self.base_url + REGISTRY_PATH, timeout=aiohttp.ClientTimeout(total=5)
        ) as response:
            response.raise_for_status()
            self.apply(await response.json())

    async def _watch(self) -> None:
        initial, maximum = self._reconnect
        await follow_forever(
            self._follow, what="registry watch", url=self.base_url, initial=initial, maximum=maximum
        )

    async def _follow(self) -> None:
        assert self._session is not None
        async for event, data in stream_events(self._session, self.base_url + WATCH_PATH):
            if event == "snapshot":
                self.apply(json.loads(data))


def resolver_from_env(environ: Mapping[str, str] | None = None) -> Resolver:
    """The resolver ``CORRAL_DISCOVERY`` asks for (``static`` when it is unset)."""
    env = os.environ if environ is None else environ
    mode = env.get(contract.DISCOVERY, "static").strip()
    if mode.startswith("registry+"):
        return RegistryResolver(
            mode.removeprefix("registry+"), env.get(contract.DISCOVERY_TOKEN), environ=env
        )
    if mode == "dns" or mode.startswith("dns:"):
        port = mode.partition(":")[2]
        return DnsResolver(int(port) if port else 80, environ=env)
    if mode == "static":
        return StaticResolver(environ=env)
    raise ValueError(
        f"{contract.DISCOVERY}={mode!r} is not a discovery mode "
        "(registry+http://HOST:PORT, dns, dns:PORT or static)"
    )
