"""Why a fault cannot be injected: in the control plane's words, not HTTP's.

The API maps each :class:`Refusal` to a status (conflict 409, invalid 422, unknown 404);
the control plane that raises it knows nothing of HTTP (issue 17: a ChaosError carried a
status code)."""

from __future__ import annotations

from enum import StrEnum

from corral.errors import CorralError


class Refusal(StrEnum):
    CONFLICT = "conflict"
    """The system's state forbids it now (already paused, nothing running)."""
    INVALID = "invalid"
    """The request itself is wrong (a duration out of range, nothing to inject)."""
    UNKNOWN = "unknown"
    """It names something the system does not have (a service without a route)."""


class ChaosError(CorralError):
    """A fault that cannot start: ``title`` in a few words, ``detail`` for the person."""

    def __init__(self, refusal: Refusal, title: str, detail: str | None = None) -> None:
        super().__init__(detail or title)
        self.refusal = refusal
        self.title = title
        self.detail = detail

    @property
    def message(self) -> str:
        return f"{self.title}: {self.detail}" if self.detail else self.title
