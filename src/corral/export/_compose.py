"""Docker Compose: the whole system in one ``compose.yaml`` and the files it mounts. Pure.

Every service with its replicas (``deploy.replicas``; ``docker compose up --scale`` works
too), its readiness check as health check, ``depends_on`` conditions, grace period,
resources and the runtime contract's environment (``CORRAL_DISCOVERY=dns:8000``: other
services are found by their Compose name, which resolves to every replica). Corral's own
parts run beside them under ``corral-`` names: the Envoy gateway (config from the gateway
renderer, DNS clusters), NATS JetStream and its Prometheus exporter, PostgreSQL with a
setup container for the ``postgres`` services. SQLite services keep their file in a named
volume shared by their replicas (one host, so SQLite's locking holds, as under
``corral up``). Secrets (PostgreSQL passwords) are read from ``compose/.env``.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from corral import contract
from corral.export._components import ENVOY, NATS, component_dockerfile_path, component_image
from corral.export._docker import container_command, dockerfile_path
from corral.export._environment import (
    GATEWAY_HOST,
    NATS_HOST,
    POSTGRES_HOST,
    container_environment,
    runs_nats,
    sqlite_url,
)
from corral.export._gateway import (
    CONFIG_PATH,
    JWKS_DIR,
    gateway_args,
    jwks_documents,
    render_gateway,
)
from corral.export._mapping import COMPOSE_RESTART, go_duration, healthcheck
from corral.export._model import (
    CONTAINER_PORT,
    DATA_DIR,
    GATEWAY_PORT,
    NATS_MONITOR_PORT,
    Export,
    ExportError,
    ExportOptions,
    Note,
    Sources,
    Target,
)
from corral.export._nats import (
    CONFIG_PATH as NATS_CONFIG_PATH,
)
from corral.export._nats import (
    READINESS_PATH as NATS_READINESS,
)
from corral.export._nats import (
    exporter_args,
    nats_args,
    render_nats_config,
)
from corral.export._postgres import (
    ADMIN_PASSWORD,
    SETUP_PATH,
    compose_database_url,
    postgres_services,
    render_setup_sql,
    secret_variables,
    setup_environment,
)
from corral.export._text import HEADER, to_yaml
from corral.manifest import Condition, DatabaseEngine, RestartPolicy
from corral.plan import Plan, ServicePlan

COMPOSE_FILE = "compose/compose.yaml"
NATS_EXPORTER_HOST = f"{contract.COMPONENT_PREFIX}nats-exporter"
POSTGRES_SETUP_HOST = f"{contract.COMPONENT_PREFIX}postgres-setup"
_CONDITION = {Condition.HEALTHY: "service_healthy", Condition.STARTED: "service_started"}


def literal(value: str) -> str:
    """A value Compose must not interpolate (``$`` is written ``$$``)."""
    return value.replace("$", "$$")


INSTANCE_WRAPPER = (
    "sh",
    "-c",
    literal('export CORRAL_INSTANCE="$CORRAL_SERVICE-$HOSTNAME"; exec "$@"'),
    "corral-instance",
)
"""Compose gives every replica the same environment; the container's hostname (its id)
is what tells them apart, so the command names the instance after it and then runs the
service in the shell's place (``exec``: the service is PID 1 and gets SIGTERM)."""


def _volume(service: ServicePlan) -> str:
    return f"{service.name}-data"


def _environment(plan: Plan, service: ServicePlan) -> dict[str, str]:
    database = service.database.engine
    url = sqlite_url(service) if database is DatabaseEngine.SQLITE else None
    env = {
        key: literal(value)
        for key, value in container_environment(
            plan, service, discovery=f"dns:{CONTAINER_PORT}", database_url=url
        ).items()
    }
    if database is DatabaseEngine.POSTGRES and contract.DATABASE_URL not in service.env:
        env[contract.DATABASE_URL] = compose_database_url(service)
    # Secrets are references: Compose takes each from the shell or compose/.env, and
    # refuses to start without it (``${VAR:?}``), rather than the export writing a value.
    for variable in service.secrets:
        env[variable] = f"${{{variable}:?{service.name} needs the secret {variable}: set it}}"
    return dict(sorted(env.items()))


def _build(options: ExportOptions, dockerfile: str) -> dict[str, str]:
    """From the system's folder (the build context), two levels up from compose/."""
    depth = len(PurePosixPath(options.context).parts) + 1
    return {"context": "/".join([".."] * depth), "dockerfile": dockerfile}


def _image(options: ExportOptions, name: str, upstream: str) -> dict[str, Any]:
    """A component's upstream image, or its local build (``--offline``)."""
    requirement = options.local_components.get(name)
    if requirement is None:
        return {"image": upstream}
    return {
        "image": component_image(name, requirement),
        "build": _build(options, component_dockerfile_path(options.context, name)),
    }


def _service(
    plan: Plan, service: ServicePlan, options: ExportOptions, notes: list[Note]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "image": options.image(plan.system, service.name),
        "build": _build(options, dockerfile_path(options.context, service.name)),
        "command": [*INSTANCE_WRAPPER, *map(literal, container_command(service))],
        "environment": _environment(plan, service),
    }
    depends: dict[str, Any] = {}
    for name, condition in service.depends_on.items():
        wanted = _CONDITION[condition]
        if condition is Condition.HEALTHY and plan.services[name].readiness is None:
            notes.append(
                Note(
                    ("services", service.name, "depends_on", name),
                    f"{name} has no readiness check, so Compose cannot wait for it to be "
                    "healthy; exported as service_started",
                )
            )
            wanted = _CONDITION[Condition.STARTED]
        depends[name] = {"condition": wanted}
    if runs_nats(plan):
        depends[NATS_HOST] = {"condition": "service_healthy"}
    if service.database.engine is DatabaseEngine.POSTGRES:
        depends[POSTGRES_SETUP_HOST] = {"condition": "service_completed_successfully"}
    if depends:
        out["depends_on"] = dict(sorted(depends.items()))
    deploy: dict[str, Any] = {"replicas": service.replicas}
    limits: dict[str, Any] = {}
    reservations: dict[str, Any] = {}
    if service.cpu is not None:
        reservations["cpus"] = f"{service.cpu:g}"
    if service.memory is not None:
        limits["memory"] = str(service.memory)
        reservations["memory"] = str(service.memory)
    if limits or reservations:
        deploy["resources"] = {
            k: v for k, v in (("limits", limits), ("reservations", reservations)) if v
        }
    deploy.update(_swarm_deploy(service))
    out["deploy"] = deploy
    if service.readiness is not None:
        check = healthcheck(service.readiness, service.startup)
        out["healthcheck"] = {**check, "test": [literal(part) for part in check["test"]]}
    if service.fixed_port is not None:
        out["ports"] = [f"127.0.0.1:{service.fixed_port}:{CONTAINER_PORT}"]
    out["read_only"] = True
    out["restart"] = COMPOSE_RESTART[service.restart.policy]
    out["stop_grace_period"] = go_duration(service.stop_grace_period)
    out["stop_signal"] = "SIGTERM"
    out["tmpfs"] = ["/tmp"]  # noqa: S108 - the container's own, in memory
    if service.database.engine is DatabaseEngine.SQLITE:
        out["volumes"] = [f"{_volume(service)}:{DATA_DIR}"]
    return out


def _gateway(
    plan: Plan, options: ExportOptions, configs: dict[str, Any], jwks: dict[str, str]
) -> dict[str, Any]:
    gateway = plan.gateway
    assert gateway is not None
    mounts = [{"source": "gateway", "target": CONFIG_PATH}]
    configs["gateway"] = {"file": "./gateway/envoy.json"}
    for name in sorted(jwks):
        key = f"gateway-jwks-{name.removesuffix('.json')}"
        configs[key] = {"file": f"./gateway/jwks/{name}"}
        mounts.append({"source": key, "target": f"{JWKS_DIR}/{name}"})
    host = "127.0.0.1:" if gateway.address in ("127.0.0.1", "localhost", "::1") else ""
    published = gateway.port or GATEWAY_PORT
    return {
        **_image(options, ENVOY, options.images.envoy),
        "command": gateway_args(plan),
        "configs": mounts,
        "ports": [f"{host}{published}:{GATEWAY_PORT}"],
        "read_only": True,
        "restart": "unless-stopped",
        "stop_grace_period": "5s",
        "tmpfs": ["/tmp"],  # noqa: S108 - the admin socket, in memory
    }


_PROBE = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)"


def _nats(options: ExportOptions, configs: dict[str, Any]) -> dict[str, Any]:
    configs["nats"] = {"file": "./nats/nats-server.conf"}
    url = f"http://127.0.0.1:{NATS_MONITOR_PORT}{NATS_READINESS}"
    # The local image has the base's python3 and no wget (the alpine image the reverse).
    probe = (
        ["CMD", "python3", "-c", _PROBE, url]
        if NATS in options.local_components
        else ["CMD", "wget", "-q", "--spider", url]
    )
    return {
        **_image(options, NATS, options.images.nats),
        "command": nats_args(),
        "configs": [{"source": "nats", "target": NATS_CONFIG_PATH}],
        "healthcheck": {
            "test": probe,
            "interval": "5s",
            "timeout": "2s",
            "retries": 3,
            "start_period": "30s",
            "start_interval": "0.5s",
        },
        "read_only": True,
        "restart": "unless-stopped",
        "stop_grace_period": "10s",
        "volumes": [f"nats-data:{DATA_DIR}"],
    }


def _postgres(plan: Plan, options: ExportOptions, configs: dict[str, Any]) -> dict[str, Any]:
    configs["postgres-setup"] = {"file": "./postgres/setup.sql"}
    server = {
        "image": options.images.postgres,
        "environment": {
            ADMIN_PASSWORD: f"${{{ADMIN_PASSWORD}:?run corral export compose to create .env}}"
        },
        "healthcheck": {
            "test": ["CMD", "pg_isready", "-U", "postgres"],
            "interval": "5s",
            "timeout": "2s",
            "retries": 5,
            "start_period": "30s",
            "start_interval": "0.5s",
        },
        "restart": "unless-stopped",
        "stop_grace_period": "30s",
        "volumes": ["postgres-data:/var/lib/postgresql/data"],
    }
    setup = {
        "image": options.images.postgres,
        "command": ["psql", "--no-psqlrc", "-f", SETUP_PATH],
        "configs": [{"source": "postgres-setup", "target": SETUP_PATH}],
        "depends_on": {POSTGRES_HOST: {"condition": "service_healthy"}},
        "environment": setup_environment(plan),
        "restart": "no",
    }
    return {POSTGRES_HOST: server, POSTGRES_SETUP_HOST: setup}


_SWARM_RESTART = {
    RestartPolicy.ALWAYS: "any",
    RestartPolicy.ON_FAILURE: "on-failure",
    RestartPolicy.NEVER: "none",
}
"""Swarm's ``restart_policy.condition``; ``none`` keeps a one-shot job from being
started again after it completed (``restart: no`` is Compose's, which Swarm ignores)."""


def _swarm_deploy(service: ServicePlan) -> dict[str, Any]:
    """What ``docker stack deploy`` reads (Compose ignores it): rolling updates that
    start the new task first and wait for its health check, rolled back on failure.

    A service on a fixed (host-mode) port cannot run two tasks on one node at once, so
    it updates stop-first. ``monitor`` covers the readiness check's failure window, so
    a task that turns unhealthy right after starting fails the update."""
    order = "stop-first" if service.fixed_port is not None else "start-first"
    check = service.readiness
    window = (check.period * check.failure_threshold + check.timeout) if check else 10.0
    monitor = go_duration(max(window, 5.0))
    restart = service.restart
    return {
        "restart_policy": {
            "condition": _SWARM_RESTART[restart.policy],
            "delay": go_duration(restart.backoff_initial),
            "window": go_duration(restart.reset_after),
        },
        "update_config": {
            "parallelism": 1,
            "order": order,
            "failure_action": "rollback",
            "monitor": monitor,
        },
        "rollback_config": {"parallelism": 1, "order": order, "monitor": monitor},
    }


def render_compose(plan: Plan, options: ExportOptions, sources: Sources) -> Export:
    document, files, notes = compose_document(plan, options, sources)
    comment = (
        HEADER.format(source=options.source)
        + ("\nRun from this folder: docker compose up --build (secrets in .env, written once).")
        + _autoscale_note(plan)
    )
    files[COMPOSE_FILE] = to_yaml([document], comment=comment)
    if secret_variables(plan):
        files["compose/.gitignore"] = ".env\n"
    return Export(dict(sorted(files.items())), tuple(notes), secret_variables(plan))


def _autoscale_note(plan: Plan) -> str:
    if scaled := sorted(n for n, s in plan.services.items() if s.autoscale is not None):
        return (  # docs/autoscale.md: Compose and Swarm have no autoscaler
            f"\nNo autoscaler in Compose or Swarm: the autoscale policies of {', '.join(scaled)} "
            "are not applied; each runs its manifest's replicas."
        )
    return ""


def compose_document(
    plan: Plan, options: ExportOptions, sources: Sources
) -> tuple[dict[str, Any], dict[str, str], list[Note]]:
    """The Compose document, the files it mounts (under ``compose/``) and the notes."""
    notes: list[Note] = []
    jwks, problems = jwks_documents(plan, sources)
    if problems:
        raise ExportError(Target.COMPOSE, problems)
    services: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    files: dict[str, str] = {}
    for name in sorted(plan.services):
        service = plan.services[name]
        services[name] = _service(plan, service, options, notes)
        if service.database.engine is DatabaseEngine.SQLITE:
            volumes[_volume(service)] = {}
    if plan.gateway is not None:
        services[GATEWAY_HOST] = _gateway(plan, options, configs, jwks)
        files["compose/gateway/envoy.json"] = render_gateway(
            plan, hosts={c.name: c.name for c in plan.gateway.clusters}
        )
        for name, text in jwks.items():
            files[f"compose/gateway/jwks/{name}"] = text
    if runs_nats(plan):
        services[NATS_HOST] = _nats(options, configs)
        volumes["nats-data"] = {}
        files["compose/nats/nats-server.conf"] = render_nats_config(plan)
        if NATS in options.local_components:
            notes.append(
                Note(
                    ("events",),
                    "no prometheus-nats-exporter with local images (its image cannot be "
                    "built from a wheel): NATS metrics are not scraped",
                )
            )
        else:
            services[NATS_EXPORTER_HOST] = {
                "image": options.images.nats_exporter,
                "command": exporter_args(f"http://{NATS_HOST}:{NATS_MONITOR_PORT}"),
                "depends_on": {NATS_HOST: {"condition": "service_healthy"}},
                "read_only": True,
                "restart": "unless-stopped",
            }
    if postgres_services(plan):
        services.update(_postgres(plan, options, configs))
        volumes["postgres-data"] = {}
        files["compose/postgres/setup.sql"] = render_setup_sql(plan)
    document: dict[str, Any] = {"name": plan.system, "services": dict(sorted(services.items()))}
    if configs:
        document["configs"] = dict(sorted(configs.items()))
    if volumes:
        document["volumes"] = dict(sorted(volumes.items()))
    return document, files, notes
