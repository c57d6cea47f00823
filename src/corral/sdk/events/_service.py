"""``svc.events``: the events component wired into the SDK's Service lifecycle.

Created on first use of ``svc.events`` (so ``@svc.events.subscribe`` works at import
time), or by the service at start when its environment names an event bus (NATS_URL,
CORRAL_EVENTS). Configured from the runtime contract when the service starts (after its
database, so the outbox and inbox use ``svc.db``, and before every component the user
registered, whatever the order of registration, so startup hooks and background loops
may publish), with the service's tracer provider (so its spans are exported with the
service's own). Started then when it has something to do from the start: handlers or
payload models declared, or topics the manifest names the service a producer or
consumer of. Otherwise (a service that only publishes, to a topic the manifest does not
name it on) on its first publish. Readiness check ``broker`` once started.
"""

from __future__ import annotations

import os
from typing import Any

from corral import contract
from corral.sdk.events._errors import NotStartedError
from corral.sdk.events._events import DEFAULT_NATS_URL, Events

READINESS_CHECK = "broker"

NO_BUS = (
    "events of {service!r} are not started: the service found no event bus when it "
    "started. Name {service!r} among the topic's producers (or consumers) in corral.yaml, "
    "which hands it NATS_URL and CORRAL_EVENTS; when running it yourself, set NATS_URL; "
    "or declare the topic at import: svc.events.topic(name, PayloadModel)"
)
STOPPED = "events of {service!r} are stopped: the service is shutting down"


class _EventsLifecycle:
    name = "events"

    def __init__(self, events: Events, service: Any) -> None:
        self._events = events
        self._service = service
        self._from_env = False

    async def start(self) -> None:
        events, service = self._events, self._service
        if events._transport is None or self._from_env:
            # Read at every start: a service started again in one process (tests) gets
            # what its environment says now. A transport configured by hand is kept.
            events.configure_from_env()
            self._from_env = True
        # Both are made anew at every start of the service.
        events.configure(
            engine=service.db.engine if service.uses_database else None,
            tracer_provider=service.tracer_provider,
        )
        if events.declared or events.named_topics():
            await self._start()
        else:
            events.start_on_first_use(self._start_on_first_use, hint=NO_BUS)

    async def _start(self) -> None:
        await self._events.start()
        self._service.add_readiness_check(READINESS_CHECK, self._events.connected)

    async def _start_on_first_use(self) -> None:
        try:
            await self._start()
        except Exception as exc:
            url = os.environ.get(contract.NATS_URL, DEFAULT_NATS_URL)
            raise NotStartedError(
                f"events of {self._events.service!r} could not start on first use: "
                f"{type(exc).__name__}: {exc} (is the event bus at {url} up?)"
            ) from exc

    async def stop(self) -> None:
        self._events.start_on_first_use(None, hint=STOPPED)
        self._service.health.remove_check(READINESS_CHECK)
        await self._events.stop()


def for_service(service: Any) -> Events:
    """An :class:`Events` started and stopped with ``service``; readiness 'broker'."""
    events = Events(service.name, transport=None)
    events.not_started_hint = NO_BUS
    service.add_lifecycle(_EventsLifecycle(events, service), first=True)
    return events
