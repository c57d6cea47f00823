"""``Service``: a FastAPI app with the runtime contract and production habits built in.

Start-up order (``svc.start``, run by the ASGI lifespan):

1. settings and runtime env are read (one :class:`SettingsError` listing every problem);
2. logging and tracing are configured, secrets registered for redaction, and the token
   verifier built (``CORRAL_IDENTITY``: see corral.sdk.identity);
3. the database starts and its schema is prepared (migrations or ``create_all``);
4. lifecycle components start: the live-configuration watch (under ``corral up``), the
   event bus (``svc.events``, when used or the environment names a bus), then the users'
   in registration order (``add_lifecycle``, ``lifespan``, ``on_startup``, ``every``);
5. readiness may turn true (the registered checks decide).

Shutdown runs the reverse: readiness false, components stopped in reverse order (a
failing ``stop`` is logged, never raised), database disposed, spans flushed.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, runtime_checkable

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic_settings import BaseSettings
from starlette.routing import Match
from typing_extensions import TypeVar

from corral import contract
from corral.sdk._database import Database
from corral.sdk._errors import PROBLEM_JSON, install_error_handlers, problem_body
from corral.sdk._health import Health, ReadinessCheck
from corral.sdk._live_config import ConfigHook, ConfigWatcher
from corral.sdk._logging import configure_logging, get_logger, register_secrets
from corral.sdk._metrics import HttpMetrics
from corral.sdk._middleware import wrap_stack
from corral.sdk._periodic import Interval, Periodic
from corral.sdk._settings import (
    RuntimeEnv,
    ServiceSettings,
    environment_secrets,
    load_settings,
    secret_values,
)
from corral.sdk._tracing import build_tracer_provider, set_caller
from corral.sdk.client._hub import ClientHub

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy import MetaData

    from corral.sdk.client import ServiceClient
    from corral.sdk.events import Events
    from corral.sdk.identity._verifier import TokenVerifier

__all__ = ["Lifecycle", "Service"]

S = TypeVar("S", bound=BaseSettings, default=ServiceSettings)


@runtime_checkable
class Lifecycle(Protocol):
    """Something that runs as long as the service: a broker connection, a client pool."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _Hooks:
    def __init__(
        self,
        name: str,
        start: Callable[[], Awaitable[None]] | None = None,
        stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self._start = start
        self._stop = stop

    async def start(self) -> None:
        if self._start is not None:
            await self._start()

    async def stop(self) -> None:
        if self._stop is not None:
            await self._stop()


class _ContextLifecycle:
    def __init__(self, name: str, factory: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        self.name = name
        self._factory = factory
        self._cm: AbstractAsyncContextManager[Any] | None = None

    async def start(self) -> None:
        self._cm = self._factory()
        await self._cm.__aenter__()

    async def stop(self) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            await cm.__aexit__(None, None, None)


class Service(Generic[S]):
    """A Corral service. ``svc.app`` is the FastAPI app; route decorators are on both.

    >>> svc = Service("greeter")
    >>> @svc.get("/hello/{name}")
    ... async def hello(name: str) -> dict[str, str]:
    ...     return {"message": f"hello {name}"}
    """

    def __init__(
        self,
        name: str,
        *,
        settings: type[S] | None = None,
        version: str = "0.1.0",
        database: bool = False,
        migrations: str | Path | None = None,
        metadata: MetaData | None = None,
        engine_options: dict[str, Any] | None = None,
        drain_delay: float = 0.0,
        log_level: str = "info",
        **fastapi_options: Any,
    ) -> None:
        """``settings``: the pydantic-settings class read from the environment at start.
        ``database``: the service owns a database (implied by ``migrations``/``metadata``).
        ``migrations``: an Alembic folder (``versions/`` inside) applied at start.
        ``metadata``: without ``migrations``, tables created with ``create_all`` at start.
        ``drain_delay``: after SIGTERM keep serving at least this long (seconds) so load
        balancers see readiness turn false; in-flight requests are always waited for.
        Other keywords go to ``FastAPI(...)``.
        """
        self.name = name
        self.version = version
        self._settings_cls = settings
        self.uses_database = database or migrations is not None or metadata is not None
        self.drain_delay = drain_delay
        self.log_level = log_level
        self._runtime: RuntimeEnv | None = None
        self._settings: S | None = None
        self._lifecycles: list[Lifecycle] = []
        self._started: list[Lifecycle] = []
        self._config_hooks: list[ConfigHook] = []

        self._events: Events | None = None
        self._identity: TokenVerifier | None = None
        self.health = Health()
        self.metrics = HttpMetrics()
        self.db = Database(migrations=migrations, metadata=metadata, engine_options=engine_options)
        self.log = get_logger()
        self._tracer_provider = build_tracer_provider(service=name, instance=name, endpoint=None)
        self.tracer = self._tracer_provider.get_tracer("corral.sdk")
        self.export_spans = False
        """True when spans are recorded and exported (OTEL_EXPORTER_OTLP_ENDPOINT set)."""

        fastapi_options.setdefault("title", name)
        self.app = FastAPI(version=version, lifespan=self._lifespan, **fastapi_options)
        self.app.state.corral_service = self
        self.app.state.corral_db = self.db
        install_error_handlers(self.app)
        self._add_builtin_routes()
        # The telemetry middleware goes around the whole stack FastAPI builds (users'
        # middleware included), not into it with add_middleware: see wrap_stack.
        build_stack = self.app.build_middleware_stack
        # The control plane's polls (probes, scrapes, `corral status` reading circuits):
        # neither traffic in the metrics nor access lines in the service's log.
        quiet = frozenset(
            (
                contract.LIVENESS_PATH,
                contract.READINESS_PATH,
                contract.METRICS_PATH,
                contract.CIRCUITS_PATH,
            )
        )
        self.app.build_middleware_stack = (  # type: ignore[method-assign]
            lambda: wrap_stack(build_stack, self, quiet, identity=lambda: self._identity)
        )

        # FastAPI's own decorators, signatures and all.
        app = self.app
        self.get = app.get
        self.post = app.post
        self.put = app.put
        self.patch = app.patch
        self.delete = app.delete
        self.head = app.head
        self.options = app.options
        self.api_route = app.api_route
        self.websocket = app.websocket
        self.include_router = app.include_router
        self.exception_handler = app.exception_handler
        self._clients = ClientHub(self)

    # -- settings -------------------------------------------------------------------
    def load_settings(self) -> None:
        """Read settings and the runtime env now; raises :class:`SettingsError`."""
        runtime, settings = load_settings(
            self.name, self._settings_cls, require_database=self.uses_database
        )
        self._runtime = runtime
        self._settings = settings

    def reset_settings(self) -> None:
        """Forget loaded settings; the next start reads the environment again."""
        self._runtime = None
        self._settings = None

    @property
    def settings(self) -> S:
        """The service's settings (read from the environment on first use)."""
        if self._settings_cls is None:
            raise AttributeError(f"service {self.name!r} was created without settings=")
        if self._settings is None:
            self.load_settings()
        assert self._settings is not None
        return self._settings

    @property
    def runtime(self) -> RuntimeEnv:
        """What the control plane told this instance (HOST, PORT, DATABASE_URL, ...)."""
        if self._runtime is None:
            self.load_settings()
        assert self._runtime is not None
        return self._runtime

    @property
    def service_name(self) -> str:
        return self.runtime.service or self.name

    @property
    def instance(self) -> str:
        return self.runtime.instance or f"{self.service_name}-{os.getpid()}"

    @property
    def events(self) -> Events:
        """Typed publish/subscribe over NATS JetStream (see corral.sdk.events)."""
        if self._events is None:
            from corral.sdk.events._service import for_service

            self._events = for_service(self)
        return self._events

    @property
    def tracer_provider(self) -> TracerProvider:
        """Where this service's spans go (exported when OTEL_EXPORTER_OTLP_ENDPOINT is set;
        replaced when the service starts and reads its environment)."""
        return self._tracer_provider

    def client(self, service: str) -> ServiceClient:
        """A pooled client calling ``service`` by name under the manifest's resilience
        policy (see corral.sdk.client); cached per target, closed when the service stops."""
        return self._clients.get(service)

    # -- extension points -----------------------------------------------------------
    def add_readiness_check(
        self, name: str, check: ReadinessCheck, *, timeout: float = 2.0
    ) -> None:
        """Readiness fails while ``await check()`` raises or returns ``False``."""
        self.health.add_check(name, check, timeout=timeout)

    def add_lifecycle(self, component: Lifecycle, *, first: bool = False) -> None:
        """Start ``component`` with the service (registration order), stop it in reverse.
        ``first``: before every component registered so far (infrastructure that users'
        components may need, such as the event bus)."""
        if not isinstance(component, Lifecycle):
            raise TypeError(f"{component!r} has no async start()/stop()")
        if first:
            self._lifecycles.insert(0, component)
        else:
            self._lifecycles.append(component)

    def lifespan(
        self, factory: Callable[[], AbstractAsyncContextManager[Any]]
    ) -> Callable[[], AbstractAsyncContextManager[Any]]:
        """Decorator: an async context manager factory entered at start, left at stop."""
        self._lifecycles.append(
            _ContextLifecycle(getattr(factory, "__name__", "lifespan"), factory)
        )
        return factory

    def on_startup[F: Callable[[], Awaitable[None]]](self, fn: F) -> F:
        """Decorator: run ``await fn()`` at start, in registration order."""
        self._lifecycles.append(_Hooks(fn.__name__, start=fn))
        return fn

    def on_shutdown[F: Callable[[], Awaitable[None]]](self, fn: F) -> F:
        """Decorator: run ``await fn()`` at stop (reverse registration order)."""
        self._lifecycles.append(_Hooks(fn.__name__, stop=fn))
        return fn

    def every[F: Callable[[], Awaitable[None]]](
        self, interval: Interval, *, name: str | None = None, stop_timeout: float = 5.0
    ) -> Callable[[F], F]:
        """Decorator: run ``await fn()`` every ``interval`` seconds while the service runs
        (a float, or a function read before each wait, such as
        ``lambda: svc.settings.sweep_s``), started after the components registered before
        it. A round that raises is logged and the next one runs; a round in progress at
        stop gets ``stop_timeout`` seconds to finish. See corral.sdk._periodic.

        >>> @svc.every(30)
        ... async def expire_offers() -> None: ...
        """

        def decorate(fn: F) -> F:
            task_name: str = name or getattr(fn, "__name__", None) or "periodic"
            self._lifecycles.append(
                Periodic(
                    fn, interval=interval, name=task_name, log=self.log, stop_timeout=stop_timeout
                )
            )
            return fn

        return decorate

    def on_config_change[F: ConfigHook](self, fn: F) -> F:
        """Decorator: run ``await fn(change)`` after reloadable settings fields were
        updated in place by a live configuration change (registration order). A hook
        that raises undoes the change, which is then reported rejected."""
        self._config_hooks.append(fn)
        return fn

    # -- lifecycle ------------------------------------------------------------------
    def configure_telemetry(self) -> None:
        """Logging and tracing from the runtime env (done by ``start`` and by serve)."""
        runtime = self.runtime
        configure_logging(
            service=self.service_name,
            instance=self.instance,
            log_format=runtime.log_format,
            level=self.log_level,
        )
        register_secrets(secret_values(runtime, self._settings) | environment_secrets(os.environ))
        set_caller(self.service_name)
        # serve configures before uvicorn starts and ``start`` again (for hosts that run
        # the app themselves): one tracer provider, not a second one with its own exporter.
        if runtime.otel_endpoint and not self.export_spans:
            self._tracer_provider = build_tracer_provider(
                service=runtime.otel_service_name or self.service_name,
                instance=self.instance,
                endpoint=runtime.otel_endpoint,
            )
            self.tracer = self._tracer_provider.get_tracer("corral.sdk")
            self.export_spans = True

    def _builtin_routes_last(self) -> None:
        """Move the built-in routes (health, metrics, circuits, and FastAPI's own OpenAPI and
        docs pages) behind the service's own, where no route of the service matches their
        paths (so nothing changes but the order of tries): the router tries routes in
        order, and each regex miss costs every request about half a microsecond."""
        app = self.app
        builtin = {*self._builtin_paths}
        if app.openapi_url:
            builtin.add(app.openapi_url)
            builtin.update(
                p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p
            )
        routes = app.router.routes
        mine = [r for r in routes if getattr(r, "path", None) in builtin]
        others = [r for r in routes if r not in mine]
        for path in builtin:
            scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
            if any(r.matches(scope)[0] is not Match.NONE for r in others):
                return
        routes[:] = [*others, *mine]

    async def start(self) -> None:
        self._builtin_routes_last()
        if self._settings_cls is not None:
            _ = self.settings
        self.configure_telemetry()
        # Before anything serves: a request that arrives once the server listens must
        # find its token checked (corral.sdk.identity).
        if self.runtime.identity is not None:
            # Imported only here: PyJWT and aiohttp are for services given providers.
            from corral.sdk.identity._setup import build_verifier

            self._identity = build_verifier(
                self.runtime.identity, client_for=self._clients.internal, log=self.log
            )
        else:
            self._identity = None
        if self.uses_database:
            url = self.runtime.database_url
            assert url is not None  # load_settings requires it
            await self.db.start(url.get_secret_value())
            self.add_readiness_check("database", self.db.check_reachable)
            if self.db.manages_schema:
                self.add_readiness_check("migrations", self.db.check_schema, timeout=0.5)
        if self._events is None and (
            os.environ.get(contract.EVENTS) or os.environ.get(contract.NATS_URL)
        ):
            # A system with an event bus: svc.events starts now when the manifest names
            # this service on a topic, else on first use (see corral.sdk.events._service).
            _ = self.events
        try:
            # Watching before anything else, so a change made while the service starts
            # is neither missed nor needs a restart (see corral.sdk._live_config).
            watcher = ConfigWatcher.from_environment(self)
            for component in [*([watcher] if watcher else []), *self._lifecycles]:
                await component.start()
                self._started.append(component)
        except BaseException:
            await self.stop()
            raise
        self.health.draining = False
        self.health.started = True
        self.log.info("service started", version=self.version, database=self.uses_database)

    async def stop(self) -> None:
        self.health.begin_drain()
        while self._started:
            component = self._started.pop()
            try:
                await component.stop()
            except Exception as exc:
                self.log.error("component failed to stop", component=repr(component), exc_info=exc)
        if self.uses_database:
            self.health.remove_check("database")
            self.health.remove_check("migrations")
            await self.db.stop()
        self._tracer_provider.force_flush(timeout_millis=2000)
        self.health.started = False
        self.log.info("service stopped")

    @asynccontextmanager
    async def _lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    # -- built-in endpoints ---------------------------------------------------------
    def _add_builtin_routes(self) -> None:
        health = self.health
        metrics = self.metrics

        async def liveness() -> JSONResponse:
            return JSONResponse({"status": "ok"})

        async def readiness() -> JSONResponse:
            ready, checks = await health.readiness()
            if ready:
                return JSONResponse({"status": "ready", "checks": checks})
            failing = [name for name, result in checks.items() if not result["ok"]]
            body = problem_body(
                503,
                "Not ready",
                detail="failing: " + ", ".join(failing),
                instance=contract.READINESS_PATH,
                checks=checks,
            )
            return JSONResponse(body, status_code=503, media_type=PROBLEM_JSON)

        async def scrape() -> Response:
            return Response(metrics.render(), media_type=metrics.content_type)

        self._builtin_paths = (
            contract.LIVENESS_PATH,
            contract.READINESS_PATH,
            contract.METRICS_PATH,
            contract.CIRCUITS_PATH,
        )
        for path, endpoint in (
            (contract.LIVENESS_PATH, liveness),
            (contract.READINESS_PATH, readiness),
            (contract.METRICS_PATH, scrape),
        ):
            self.app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)
