"""The control-plane HTTP API (server side) and its client (used by the CLI)."""

from corral.api._app import API_VERSION, ControlTarget, create_app
from corral.api._client import ApiClient, ApiError, NotRunningError
from corral.api._files import RunFiles

__all__ = [
    "API_VERSION",
    "ApiClient",
    "ApiError",
    "ControlTarget",
    "NotRunningError",
    "RunFiles",
    "create_app",
]
