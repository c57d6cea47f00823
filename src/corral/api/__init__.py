"""The control-plane HTTP API (server side) and its client (used by the CLI).

The server side (FastAPI) is imported only when asked for, so the CLI's client
commands start fast.
"""

from typing import TYPE_CHECKING, Any

from corral.api._client import ApiClient, ApiError, Published, published
from corral.api._config_client import ConfigClient
from corral.api._files import RunFiles
from corral.api._reload import ManifestApplied, ReloadResult
from corral.api._version import API_VERSION, DASHBOARD_PATH, OTLP_BASE
from corral.api._watch_client import WatchClient
from corral.runtime.errors import NotRunningError

if TYPE_CHECKING:
    from corral.api._app import ControlTarget, create_app

from corral.api._files import new_token
from corral.api._problems import ApiProblem

__all__ = [
    "API_VERSION",
    "DASHBOARD_PATH",
    "OTLP_BASE",
    "ApiClient",
    "ApiError",
    "ApiProblem",
    "ConfigClient",
    "ControlTarget",
    "ManifestApplied",
    "NotRunningError",
    "Published",
    "ReloadResult",
    "RunFiles",
    "WatchClient",
    "create_app",
    "new_token",
    "published",
]


def __getattr__(name: str) -> Any:
    if name in ("ControlTarget", "create_app"):
        from corral.api import _app

        return getattr(_app, name)
    raise AttributeError(name)
