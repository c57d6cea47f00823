"""Requests and limits for every container of the Kubernetes export. Pure.

The mapping (see ``_mapping.py``): CPU is a request and never a limit (a CPU limit
throttles a latency-sensitive service even on an idle node); memory is request and limit
alike (memory cannot be taken back, so a request below the limit only moves the
out-of-memory kill to a worse moment). What the manifest leaves out gets a default, so
no pod of the system is BestEffort (the first evicted, scheduled anywhere) and each
default is said in a note (``corral lint`` reports it too, CL601).

The defaults come from measurements (docs/export.md): an SDK service with a few routes
holds about 90 MiB after start and after 2,000 requests, Envoy with ridehail's gateway
about 70 MiB, nats-server with JetStream about 35 MiB after 10,000 persisted publishes.
256 MiB leaves each about three times its measured size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from corral.export._mapping import cpu_quantity, memory_quantity
from corral.export._model import Note
from corral.plan import ServicePlan

MiB = 2**20


@dataclass(frozen=True)
class Size:
    cpu: float
    """Cores requested."""
    memory: int
    """Bytes requested, and the limit."""


SERVICE_DEFAULT = Size(cpu=0.1, memory=256 * MiB)
GATEWAY = Size(cpu=0.1, memory=256 * MiB)
NATS = Size(cpu=0.1, memory=256 * MiB)
NATS_EXPORTER = Size(cpu=0.01, memory=64 * MiB)


def container_resources(size: Size) -> dict[str, Any]:
    memory = memory_quantity(size.memory)
    return {
        "requests": {"cpu": cpu_quantity(size.cpu), "memory": memory},
        "limits": {"memory": memory},
    }


def service_resources(service: ServicePlan, notes: list[Note]) -> dict[str, Any]:
    """The manifest's resources, with :data:`SERVICE_DEFAULT` for what it leaves out
    (and a note saying so)."""
    size = Size(
        cpu=service.cpu if service.cpu is not None else SERVICE_DEFAULT.cpu,
        memory=service.memory if service.memory is not None else SERVICE_DEFAULT.memory,
    )
    defaulted = [
        f"{key} {value}"
        for key, value, given in (
            ("cpu", cpu_quantity(size.cpu), service.cpu),
            ("memory", memory_quantity(size.memory), service.memory),
        )
        if given is None
    ]
    if defaulted:
        notes.append(
            Note(
                ("services", service.name, "resources"),
                f"not set; exported with the default {' and '.join(defaulted)} (memory is "
                "also the limit): set resources: to size it (corral lint CL601)",
            )
        )
    return container_resources(size)
