"""corral.sdk: build Corral services as FastAPI apps with production habits built in.

It is the service side of :mod:`corral.contract` and imports nothing else of Corral::

    from corral.sdk import Service

    svc = Service("greeter")

    @svc.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        return {"message": f"hello {name}"}

Serve it with ``python -m corral.sdk.serve greeter.app:svc``.

Importing it stays cheap (every instance pays it at start): SQLAlchemy, Alembic, NATS,
aiohttp, PyJWT and the OTLP exporters load when a service uses a database, events,
clients, identity or trace export, not here. ``DbSession`` and ``DbReadSession`` (which
need SQLAlchemy's types at runtime) are therefore resolved on first access.
"""

from typing import TYPE_CHECKING, Any

from corral.sdk._context import current_request_id
from corral.sdk._database import Database, async_url
from corral.sdk._errors import PROBLEM_JSON, Problem
from corral.sdk._health import ReadinessCheck
from corral.sdk._live_config import ConfigChange
from corral.sdk._logging import get_logger
from corral.sdk._metrics import UNMATCHED_ROUTE
from corral.sdk._service import Lifecycle, Service
from corral.sdk._settings import RuntimeEnv, ServiceSettings, SettingsError
from corral.sdk._tracing import current_trace_id, inject_trace_headers

if TYPE_CHECKING:
    from corral.sdk._db_session import DbReadSession, DbSession

__all__ = [
    "PROBLEM_JSON",
    "UNMATCHED_ROUTE",
    "ConfigChange",
    "Database",
    "DbReadSession",
    "DbSession",
    "Lifecycle",
    "Problem",
    "ReadinessCheck",
    "RuntimeEnv",
    "Service",
    "ServiceSettings",
    "SettingsError",
    "async_url",
    "current_request_id",
    "current_trace_id",
    "get_logger",
    "inject_trace_headers",
]


def __getattr__(name: str) -> Any:
    # PEP 562: the names whose modules are too heavy to import with the SDK.
    if name in ("DbSession", "DbReadSession"):
        from corral.sdk import _db_session

        return getattr(_db_session, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
