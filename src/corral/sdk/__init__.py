"""corral.sdk: build Corral services as FastAPI apps with production habits built in.

It is the service side of :mod:`corral.contract` and imports nothing else of Corral::

    from corral.sdk import Service

    svc = Service("greeter")

    @svc.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        return {"message": f"hello {name}"}

Serve it with ``python -m corral.sdk.serve greeter.app:svc``.
"""

from corral.sdk._context import current_request_id
from corral.sdk._database import Database, DbSession, async_url
from corral.sdk._errors import PROBLEM_JSON, Problem
from corral.sdk._health import ReadinessCheck
from corral.sdk._live_config import ConfigChange
from corral.sdk._logging import get_logger
from corral.sdk._metrics import UNMATCHED_ROUTE
from corral.sdk._service import Lifecycle, Service
from corral.sdk._settings import RuntimeEnv, ServiceSettings, SettingsError
from corral.sdk._tracing import current_trace_id, inject_trace_headers

__all__ = [
    "PROBLEM_JSON",
    "UNMATCHED_ROUTE",
    "ConfigChange",
    "Database",
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
