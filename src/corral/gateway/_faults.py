"""Failure injection at the gateway (``corral chaos gateway``): Envoy's fault filter,
switched live through runtime keys. Pure.

Every route carries a fault config that injects nothing (0%) and names per-service
runtime keys for its percentages, status and delay. The control plane sets those keys
through the admin API's ``/runtime_modify`` (an admin runtime layer is in the bootstrap),
so starting or ending an experiment is one admin call, applied at once, with no config
reload; an empty value removes an override, back to 0%. A client can never inject faults:
header control (``header_abort``/``header_delay``) is not configured, and per-downstream
cluster keys and stats are off.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.gateway._envoy import T_FAULT, Json, percent

DEFAULT_ABORT_STATUS = 503
# Envoy requires a delay above zero in the config; the runtime key sets the real one.
_PLACEHOLDER_DELAY = "0.001s"


def runtime_key(service: str, setting: str) -> str:
    """``corral.fault.<service>.<setting>`` (abort_percent, abort_status, delay_percent,
    delay_ms)."""
    return f"corral.fault.{service}.{setting}"


def fault_filter() -> Json:
    """The listener's fault filter: nothing by itself; the per-route configs decide."""
    return {"@type": T_FAULT, "disable_downstream_cluster_stats": True}


def route_fault(service: str) -> Json:
    """A route's fault config: 0% abort and 0% delay until the runtime says otherwise."""
    return {
        "@type": T_FAULT,
        "abort": {"http_status": DEFAULT_ABORT_STATUS, "percentage": percent(0)},
        "abort_percent_runtime": runtime_key(service, "abort_percent"),
        "abort_http_status_runtime": runtime_key(service, "abort_status"),
        "delay": {"fixed_delay": _PLACEHOLDER_DELAY, "percentage": percent(0)},
        "delay_percent_runtime": runtime_key(service, "delay_percent"),
        "delay_duration_runtime": runtime_key(service, "delay_ms"),
        "disable_downstream_cluster_stats": True,
    }


def runtime_layers() -> Json:
    """The bootstrap's ``layered_runtime``: an admin layer, so /runtime_modify works."""
    return {"layers": [{"name": "corral-admin", "admin_layer": {}}]}


@dataclass(frozen=True)
class Fault:
    """What to inject on the routes to one service, for ``percent`` of requests."""

    service: str
    percent: int
    abort_status: int | None = None
    delay_ms: int | None = None

    def overrides(self) -> dict[str, str]:
        """The runtime values that switch this fault on (unused settings are cleared)."""
        return {
            runtime_key(self.service, "abort_percent"): str(self.percent)
            if self.abort_status
            else "",
            runtime_key(self.service, "abort_status"): str(self.abort_status or ""),
            runtime_key(self.service, "delay_percent"): str(self.percent) if self.delay_ms else "",
            runtime_key(self.service, "delay_ms"): str(self.delay_ms or ""),
        }

    def cleared(self) -> dict[str, str]:
        """The runtime values that switch it off again (overrides removed: 0%)."""
        return dict.fromkeys(self.overrides(), "")
