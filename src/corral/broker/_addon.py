"""``BrokerAddon``: the event bus in the local runtime (see corral.runtime.addon).

``start``: with no external URL (manifest ``events.url`` or ``NATS_URL`` given to
corral), write a config and run the embedded nats-server through ``ctx.run_component``
(supervised, restarted, ready once JetStream answers ``/healthz?js-enabled-only=true``),
store under ``<state_dir>/nats``; then provision streams and consumers and keep the
report. ``environment``: each instance gets NATS_URL and CORRAL_EVENTS (its topics).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import nats

from corral import contract
from corral.broker._provision import ProvisionReport, provision
from corral.broker._server import BrokerError, component_plan, find_binary, server_config
from corral.broker._topology import topology
from corral.plan import EventsPlan, ServicePlan
from corral.runtime.addon import Addon, RuntimeContext


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
        self.embedded = False
        self.report: ProvisionReport | None = None
        self._events: EventsPlan | None = None

    async def start(self, ctx: RuntimeContext) -> None:
        plan = ctx.plan
        events = plan.events
        url = (events.url if events else None) or self._environ.get(contract.NATS_URL)
        if url is None:
            if events is None:
                return  # no events section and no bus asked for: nothing to run
            store = plan.state_dir / "nats"
            store.mkdir(parents=True, exist_ok=True)
            port, monitor = ctx.free_port(), ctx.free_port()
            config = store / "nats-server.conf"
            config.write_text(
                server_config(
                    port=port,
                    monitor_port=monitor,
                    store_dir=store / "jetstream",
                    name=f"corral-{plan.system}",
                ),
                encoding="utf-8",
            )
            binary = self._binary or find_binary()
            await ctx.run_component(
                component_plan(
                    binary=binary, config_path=config, monitor_port=monitor, workdir=store
                )
            )
            url = f"nats://127.0.0.1:{port}"
            self.embedded = True
        self.url = url
        self._events = events
        if events is not None:
            try:
                nc = await nats.connect(
                    url, connect_timeout=5, max_reconnect_attempts=3, error_cb=_quiet
                )
            except Exception as exc:
                raise BrokerError(f"cannot reach NATS at {url}: {exc}") from exc
            try:
                self.report = await provision(nc.jetstream(), events)
            finally:
                await nc.close()

    def environment(self, service: ServicePlan) -> dict[str, str]:
        if self.url is None:
            return {}
        env = {contract.NATS_URL: self.url}
        if self._events is not None:
            env[contract.EVENTS] = topology(self._events, service.name).to_json()
        return env

    def status(self) -> dict[str, Any]:
        if self.url is None:
            return {}
        out: dict[str, Any] = {"nats_url": self.url, "nats_embedded": self.embedded}
        if self.report is not None:
            out["events_provisioning"] = self.report.as_dict()
        return out
