"""Where ``up``'s time goes: when each part of the start began and ended.

The orchestrator records a phase per part (the control plane's own imports, the fork
server, each addon, each service, each instance: spawned, listening, ready) while the
system starts, and stops recording once it is ready, so restarts later do not blur it.
Times are seconds since the control plane's process began (its own imports count too).
``corral up --timings`` prints it; ``corral status --json`` carries it as ``startup``.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

__all__ = ["Phase", "Timeline"]


class Phase(BaseModel):
    """One part of the start: seconds since the control plane's process began."""

    name: str
    start: float
    end: float | None = Field(default=None, description="None: not finished (or failed).")
    marks: dict[str, float] = Field(
        default_factory=dict, description="Moments within it (an instance's `listening`)."
    )

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else self.end - self.start


class Timeline:
    """Phases in the order they began; only the first start of a name counts."""

    def __init__(self, origin: float | None = None) -> None:
        """``origin``: the Unix time the control plane's process began (now if None)."""
        self.origin = time.time() if origin is None else origin
        self._phases: dict[str, Phase] = {}
        self.done = False
        """Once the system is ready: nothing more is recorded."""

    def _now(self) -> float:
        return round(time.time() - self.origin, 4)

    def span(self, name: str, start: float, end: float | None = None) -> None:
        """A phase whose times are known already (Unix times)."""
        if not self.done and name not in self._phases:
            stop = None if end is None else round(end - self.origin, 4)
            self._phases[name] = Phase(name=name, start=round(start - self.origin, 4), end=stop)

    def begin(self, name: str) -> None:
        if not self.done and name not in self._phases:
            self._phases[name] = Phase(name=name, start=self._now())

    def end(self, name: str) -> None:
        phase = self._phases.get(name)
        if not self.done and phase is not None and phase.end is None:
            phase.end = self._now()

    def mark(self, name: str, what: str) -> None:
        phase = self._phases.get(name)
        if not self.done and phase is not None and what not in phase.marks:
            phase.marks[what] = self._now()

    def finish(self) -> None:
        self.done = True

    def phases(self) -> list[Phase]:
        return [phase.model_copy(deep=True) for phase in self._phases.values()]
