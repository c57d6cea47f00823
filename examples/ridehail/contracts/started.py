"""What a service makes as it starts, typed, for its handlers.

Some objects need the settings or the database, so they cannot exist at import time: the
matcher, auth's key ring. A module-global dict would lose their types (and need a
``type: ignore`` per accessor); a :class:`Started` holder keeps them::

    matcher = Started[Matcher]("the matcher")

    @svc.on_startup
    async def _start() -> None:
        matcher.set(Matcher(...))

    @svc.get("/drivers")
    async def drivers(m: Annotated[Matcher, Depends(matcher.dependency)]) -> ...:
        ...

    @svc.events.subscribe("ride.requested")
    async def on_requested(event: RideRequested) -> None:
        await matcher().ride_requested(...)                             # or a call

As a FastAPI dependency (``matcher.dependency``, a coroutine: FastAPI would run a plain
callable on its thread pool, a hop per request) it can be overridden in tests like any
other (``app.dependency_overrides[matcher.dependency] = ...``).
"""

from __future__ import annotations


class NotStarted(RuntimeError):
    """Asked for before the service started (or after it stopped): a programming error."""


class Started[T]:
    """One value, set by a start-up hook, read by handlers."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._value: T | None = None

    def set(self, value: T) -> None:
        self._value = value

    def clear(self) -> None:
        self._value = None

    def __call__(self) -> T:
        if self._value is None:
            raise NotStarted(f"{self.what} is made when the service starts, and it has not")
        return self._value

    async def dependency(self) -> T:
        return self()
