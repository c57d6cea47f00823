"""The control plane's autoscaling loop: every few seconds, each service with an
``autoscale:`` policy is measured from the telemetry the control plane already scrapes
(in-flight requests and CPU per instance, p95 latency) or from the event bus (messages
waiting for the service on its topic), its :class:`~corral.autoscale.Autoscaler`
decides, and the orchestrator scales. Decisions, with their reasons, are kept for
``corral status`` and the status API, and logged.

A service someone stopped (0 replicas) is left stopped: the loop never starts what a
person stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from corral.autoscale import Autoscaler, Decision
from corral.plan import AutoscalePlan, Plan
from corral.runtime.errors import CorralRuntimeError
from corral.runtime.orchestrator import Orchestrator
from corral.telemetry import TelemetryAddon

__all__ = ["AutoscaleLoop"]

_log = logging.getLogger("corral.autoscale")

KEPT = 20
"""Decisions kept per service (the changes, and the latest of any kind)."""


class AutoscaleLoop:
    def __init__(
        self,
        orchestrator: Orchestrator,
        telemetry: TelemetryAddon | None,
        plan: Callable[[], Plan],
        *,
        period: float = 2.0,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._orchestrator = orchestrator
        self._telemetry = telemetry
        self._plan = plan
        self.period = period
        """Seconds between decisions."""
        self.window = window
        """Seconds of telemetry a decision reads (CPU and p95 over it; in-flight now)."""
        self._clock = clock
        self._scalers: dict[str, Autoscaler] = {}
        self._latest: dict[str, Decision] = {}
        self._changes: dict[str, deque[Decision]] = {}

    async def run(self) -> None:
        """Decide every ``period`` seconds until cancelled; an error is logged, never
        the end of the loop."""
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.tick()
            except Exception:
                _log.exception("autoscale: a round failed")

    async def tick(self) -> None:
        """One round: measure, decide and scale every autoscaled service."""
        policies = {
            name: service.autoscale
            for name, service in self._plan().services.items()
            if service.autoscale is not None
        }
        if not policies:
            return
        status = self._orchestrator.status()
        summary = self._summary()
        bus = await self._bus() if any(p.metric == "lag" for p in policies.values()) else None
        for name, policy in policies.items():
            service = status.services.get(name)
            if service is None or service.replicas == 0:
                continue
            scaler = self._scalers.get(name)
            if scaler is None or scaler.policy != policy:
                scaler = self._scalers[name] = Autoscaler(policy, clock=self._clock)
            value = _measure(policy, summary.get(name), service.ready, bus, name)
            decision = scaler.decide(service.replicas, value)
            self._latest[name] = decision
            if not decision.changes:
                continue
            self._changes.setdefault(name, deque(maxlen=KEPT)).append(decision)
            _log.warning("autoscale %s: %s", name, decision.reason)
            try:
                await self._orchestrator.scale(name, decision.desired)
            except CorralRuntimeError as exc:
                _log.warning("autoscale %s: scaling to %d failed: %s", name, decision.desired, exc)

    def status(self) -> dict[str, Any]:
        """Per autoscaled service: its policy, the latest decision and the last changes."""
        out: dict[str, Any] = {}
        now, wall = self._clock(), time.time()
        for name, scaler in sorted(self._scalers.items()):
            policy = scaler.policy
            latest = self._latest.get(name)
            out[name] = {
                "min": policy.min,
                "max": policy.max,
                "metric": policy.metric,
                "target": policy.target,
                "desired": latest.desired if latest else None,
                "reason": latest.reason if latest else None,
                "changes": [
                    {
                        "at": round(wall - (now - d.at), 3),
                        "from": d.current,
                        "to": d.desired,
                        "reason": d.reason,
                    }
                    for d in self._changes.get(name, ())
                ],
            }
        return out

    def _summary(self) -> dict[str, dict[str, Any]]:
        if self._telemetry is None:
            return {}
        summary = self._telemetry.summary(window=self.window)
        return {entry["service"]: entry for entry in summary["services"]}

    async def _bus(self) -> dict[str, Any] | None:
        if self._telemetry is None:
            return None
        try:
            return await self._telemetry.event_bus()
        except Exception as exc:  # the bus unreachable: no lag measured this round
            _log.warning("autoscale: cannot read the event bus: %s", exc)
            return None


def _measure(
    policy: AutoscalePlan,
    summary: dict[str, Any] | None,
    ready: int,
    bus: dict[str, Any] | None,
    service: str,
) -> float | None:
    """The policy's measure now (None: not measured)."""
    if policy.metric == "lag":
        if bus is None:
            return None
        return float(
            sum(
                row["pending"] + row["ack_pending"]
                for topic in bus.get("topics", [])
                if topic["topic"] == policy.topic
                for row in topic.get("consumers", [])
                if row["service"] == service
            )
        )
    if summary is None or not summary.get("window"):
        return None
    if policy.metric == "p95":
        p95 = summary.get("p95")
        return None if p95 is None else float(p95)
    if ready == 0:
        return None
    return float(summary[policy.metric]) / ready
