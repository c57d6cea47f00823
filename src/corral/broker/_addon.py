"""``BrokerAddon``: the event bus in the local runtime (see corral.runtime.addon).

``start``: with no external URL (manifest ``events.url`` or ``NATS_URL`` given to
corral), generate the system's bus credentials (_credentials.py), write a config and
run the embedded nats-server through ``ctx.run_component`` (supervised, restarted,
ready once JetStream answers ``/healthz?js-enabled-only=true``), store under
``<state_dir>/nats``. Then open the control plane's one connection to the bus (kept,
reconnecting, until ``stop``), provision streams and consumers on it and keep the
report. ``environment``: each instance of a service that produces or consumes a topic
gets NATS_URL (with its service's credentials) and CORRAL_EVENTS (its topics); other
instances get neither.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from corral import contract
from corral.broker._credentials import (
    CONFIG_FILE,
    BusCredentials,
    forget_control_url,
    prepare_store,
    record_control_url,
    with_credentials,
    without_credentials,
    write_private,
)
from corral.broker._overview import bus_overview
from corral.broker._provision import ProvisionReport, provision
from corral.broker._server import BrokerError, component_plan, find_binary, server_config
from corral.broker._topology import topology
from corral.plan import EventsPlan, ServicePlan
from corral.runtime.addon import Addon, RuntimeContext

CONNECTION_NAME = "corral-control"
"""How the control plane's connection shows in nats-server's ``/connz``."""


async def _quiet(_: Exception) -> None:
    """nats-py logs every failed connection attempt with a traceback by default; the
    outcome is reported once, as a BrokerError with the URL."""


class BrokerAddon(Addon):
    name = "broker"

    def __init__(
        self, *, environ: Mapping[str, str] | None = None, binary: str | None = None
    ) -> None:
        """``environ``: where NATS_URL may come from (default: this process's)."""
        self._environ = os.environ if environ is None else environ
        self._binary = binary
        self.url: str | None = None
        """The control plane's URL of the bus, credentials included: never print it
        (``status()`` shows :attr:`public_url`)."""
        self.public_url: str | None = None
        """The bus's address without credentials."""
        self.embedded = False
        self.report: ProvisionReport | None = None
        self._events: EventsPlan | None = None
        self._credentials: BusCredentials | None = None
        self._store: Path | None = None
        self._nc: Client | None = None

    async def start(self, ctx: RuntimeContext) -> None:
        plan = ctx.plan
        events = plan.events
        url = (events.url if events else None) or self._environ.get(contract.NATS_URL)
        store = plan.state_dir / "nats"
        if url is None:
            if events is None:
                return  # no events section and no bus asked for: nothing to run
            url = await self._run_embedded(ctx, events, store)
        else:
            prepare_store(store)
        self.url = url
        self.public_url = without_credentials(url)
        self._events = events
        self._store = store
        # The user's own credentials, when the URL is theirs: `corral events` in another
        # process needs them as much as the control plane's.
        record_control_url(store, url)
        if events is not None:
            self._nc = await self._connect(url)
            self.report = await provision(self._nc.jetstream(), events)

    async def _run_embedded(self, ctx: RuntimeContext, events: EventsPlan, store: Path) -> str:
        """Start the system's own nats-server; its control-plane URL."""
        prepare_store(store)
        bus_users = {s for topic in events.topics for s in (*topic.producers, *topic.consumers)}
        self._credentials = BusCredentials.generate(bus_users)
        port, monitor = ctx.free_port(), ctx.free_port()
        config = store / CONFIG_FILE
        write_private(
            config,
            server_config(
                port=port,
                monitor_port=monitor,
                store_dir=store / "jetstream",
                name=f"corral-{ctx.plan.system}",
                users=self._credentials.users,
            ),
        )
        binary = self._binary or find_binary()
        await ctx.run_component(
            component_plan(binary=binary, config_path=config, monitor_port=monitor, workdir=store)
        )
        self.embedded = True
        return with_credentials(f"nats://127.0.0.1:{port}", self._credentials.control)

    async def _connect(self, url: str) -> Client:
        """The control plane's connection: a few attempts to open it (a bus that does
        not answer fails `corral up` with one line), then reconnecting for as long as
        the system runs (nats-server is restarted by the supervisor)."""
        try:
            nc = await nats.connect(
                url,
                name=CONNECTION_NAME,
                connect_timeout=5,
                max_reconnect_attempts=3,
                reconnect_time_wait=0.25,
                error_cb=_quiet,
            )
        except Exception as exc:
            where = without_credentials(url)
            raise BrokerError(f"cannot reach NATS at {where}: {exc}") from exc
        # nats.py applies one limit to the first connection and to reconnections; with
        # -1 from the start, `corral up` would wait forever for a bus that is not there.
        nc.options["max_reconnect_attempts"] = -1
        return nc

    async def overview(self, *, letters: int = 20) -> dict[str, Any] | None:
        """The bus at a glance (see :func:`bus_overview`), on the kept connection: a
        dashboard polling it opens no connection. None without an ``events`` section."""
        if self._nc is None or self._events is None:
            return None
        return await bus_overview(self._nc, self._events, letters=letters)

    def environment(self, service: ServicePlan) -> dict[str, str]:
        if self.url is None or self._events is None:
            return {}
        if not self._events.topics_of(service.name):
            return {}  # only services on the bus get its address and credentials
        url = self.url
        if self._credentials is not None:
            user = self._credentials.service(service.name)
            assert user is not None, f"{service.name} has topics, so it has a bus user"
            url = with_credentials(url, user)
        return {
            contract.NATS_URL: url,
            contract.EVENTS: topology(self._events, service.name).to_json(),
        }

    async def stop(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):  # must not raise; the bus may be gone
                await nc.close()
        if self._store is not None:
            forget_control_url(self._store)

    def status(self) -> dict[str, Any]:
        if self.public_url is None:
            return {}
        out: dict[str, Any] = {
            "nats_url": self.public_url,
            "nats_embedded": self.embedded,
            "nats_authenticated": self._credentials is not None or self.url != self.public_url,
        }
        if self.report is not None:
            out["events_provisioning"] = self.report.as_dict()
        return out
