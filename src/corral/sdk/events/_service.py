"""``svc.events``: the events component wired into the SDK's Service lifecycle.

Created on first use of ``svc.events`` (so ``@svc.events.subscribe`` works at import
time); configured from the runtime contract when the service starts (after its
database, so the outbox and inbox use ``svc.db``, and before every component the user
registered, whatever the order of registration, so startup hooks and background loops
may publish); readiness check ``broker``.
"""

from __future__ import annotations

from typing import Any

from corral.sdk.events._events import Events


class _EventsLifecycle:
    name = "events"

    def __init__(self, events: Events, service: Any) -> None:
        self._events = events
        self._service = service

    async def start(self) -> None:
        if self._events._transport is None:
            engine = self._service.db.engine if self._service.uses_database else None
            self._events.configure_from_env(engine=engine)
        await self._events.start()

    async def stop(self) -> None:
        await self._events.stop()


def for_service(service: Any) -> Events:
    """An :class:`Events` started and stopped with ``service``; readiness 'broker'."""
    events = Events(service.name, transport=None)
    service.add_lifecycle(_EventsLifecycle(events, service), first=True)
    service.add_readiness_check("broker", events.connected)
    return events
