"""The runtime contract's environment for an instance on a container platform. Pure.

The same function the local runtime uses (:func:`corral.plan.instance_environment`), with
the platform's answers: listen on every interface at :data:`CONTAINER_PORT`, find other
services by DNS name, the bus at ``corral-nats`` (or the manifest's ``events.url``), and
the service's own database in its volume or on the system's PostgreSQL.
"""

from __future__ import annotations

from corral import contract
from corral.broker import topology
from corral.export._model import CONTAINER_PORT, DATA_DIR, NATS_PORT
from corral.manifest import DatabaseEngine
from corral.plan import Endpoints, Plan, ServicePlan, instance_environment

NATS_HOST = f"{contract.COMPONENT_PREFIX}nats"
GATEWAY_HOST = f"{contract.COMPONENT_PREFIX}gateway"
POSTGRES_HOST = f"{contract.COMPONENT_PREFIX}postgres"


def nats_url(plan: Plan) -> str | None:
    """The manifest's external bus, the exported one, or None without an events section."""
    if plan.events is None:
        return None
    return plan.events.url or f"nats://{NATS_HOST}:{NATS_PORT}"


def runs_nats(plan: Plan) -> bool:
    """Whether the export runs its own nats-server (events, and no external URL)."""
    return plan.events is not None and plan.events.url is None


def sqlite_url(service: ServicePlan) -> str:
    return f"sqlite+aiosqlite:///{DATA_DIR}/{service.database.name}.sqlite3"


def uses(service: ServicePlan, engine: DatabaseEngine) -> bool:
    return service.database.engine is engine


def container_environment(
    plan: Plan,
    service: ServicePlan,
    *,
    discovery: str,
    database_url: str | None,
    instance: str | None = None,
) -> dict[str, str]:
    """The contract's variables for every instance of ``service``, sorted by name.

    ``instance`` None leaves CORRAL_INSTANCE out, for the platform to set per instance:
    Compose's command from the container's hostname, Kubernetes from the pod's name.
    """
    extra: dict[str, str] = {}
    if plan.events is not None:
        extra[contract.EVENTS] = topology(plan.events, service.name).to_json()
    env = instance_environment(
        plan,
        service,
        instance=instance or "",
        port=CONTAINER_PORT,
        endpoints=Endpoints(
            host="0.0.0.0", nats_url=nats_url(plan), discovery=discovery, extra=extra
        ),
        database_url=database_url,
    )
    if instance is None:
        del env[contract.INSTANCE]
    return dict(sorted(env.items()))
