"""The Envoy gateway as a container: the gateway package's own renderer, in DNS mode. Pure.

Differences from ``corral up`` (where the registry feeds Envoy only ready instances and
the runtime takes an instance out before stopping it):

- listener on every interface at :data:`GATEWAY_PORT`; stats (``/ready``,
  ``/stats/prometheus``) at :data:`GATEWAY_STATS_PORT` for probes and Prometheus;
- each cluster resolves its service's DNS name (STRICT_DNS): every address is an
  endpoint, so Envoy balances across instances and ejects one that fails;
- a cluster without a ``health_check`` of its own gets one on the service's HTTP
  readiness path, with the readiness check's period and one failure to leave: what
  keeps a starting or draining instance (``/readyz`` answers 503 from SIGTERM on) out
  of traffic, as the registry does locally (and with no panic mode: when every
  instance fails, the gateway answers 503 rather than sending to them anyway);
- JWKS files are mounted at :data:`JWKS_DIR`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from corral.export._model import (
    CONTAINER_PORT,
    GATEWAY_PORT,
    GATEWAY_STATS_PORT,
    Problem,
    Sources,
)
from corral.export._text import to_json
from corral.gateway import DnsTarget, Ports, envoy_component, render_dns
from corral.manifest import HealthCheckSpec
from corral.plan import CheckKind, ClusterPlan, GatewayPlan, Plan

CONFIG_DIR = "/etc/envoy"
CONFIG_PATH = f"{CONFIG_DIR}/envoy.json"
JWKS_DIR = f"{CONFIG_DIR}/jwks"
ADMIN_SOCKET = "/tmp/envoy-admin.sock"  # noqa: S108 - the container's own /tmp (a tmpfs)


def jwks_name(provider: str) -> str:
    return f"{provider}.json"


def container_gateway(plan: Plan) -> GatewayPlan:
    """The manifest's gateway as it runs in a container (see the module docstring)."""
    gateway = plan.gateway
    assert gateway is not None
    providers = tuple(
        dataclasses.replace(p, jwks_file=Path(JWKS_DIR) / jwks_name(p.name))
        if p.jwks_file is not None
        else p
        for p in gateway.providers
    )
    return dataclasses.replace(
        gateway,
        address="0.0.0.0",
        port=GATEWAY_PORT,
        providers=providers,
        clusters=tuple(_with_readiness(plan, c) for c in gateway.clusters),
    )


def _with_readiness(plan: Plan, cluster: ClusterPlan) -> ClusterPlan:
    readiness = plan.services[cluster.name].readiness
    if cluster.health_check is not None or readiness is None:
        return cluster
    if readiness.kind is not CheckKind.HTTP or readiness.path is None:
        return cluster
    check = HealthCheckSpec(
        path=readiness.path,
        interval=readiness.period,
        timeout=readiness.timeout,
        unhealthy_threshold=1,
        healthy_threshold=1,
    )
    return dataclasses.replace(cluster, health_check=check)


def render_gateway(plan: Plan, *, hosts: dict[str, str]) -> str:
    """``envoy.json``; ``hosts`` maps each cluster's service to the DNS name of its
    instances on the platform."""
    gateway = container_gateway(plan)
    config = render_dns(
        gateway,
        targets={c.name: DnsTarget(hosts[c.name], CONTAINER_PORT) for c in gateway.clusters},
        ports=Ports(listener=GATEWAY_PORT, stats=GATEWAY_STATS_PORT),
        admin_socket=ADMIN_SOCKET,
    )
    return to_json(config)


def gateway_args(plan: Plan) -> list[str]:
    """Envoy's arguments (the image's entrypoint is envoy): the flags ``corral up`` runs
    it with, and the config in the container."""
    gateway = plan.gateway
    assert gateway is not None
    component = envoy_component(
        envoy="envoy",
        bootstrap=Path(CONFIG_PATH),
        stats_port=GATEWAY_STATS_PORT,
        workers=gateway.workers,
        workdir=Path(CONFIG_DIR),
    )
    return list(component.argv[1:])


def jwks_documents(plan: Plan, sources: Sources) -> tuple[dict[str, str], list[Problem]]:
    """File name -> JWKS text for every provider whose keys are a local file."""
    out: dict[str, str] = {}
    problems = []
    for provider in plan.gateway.providers if plan.gateway else ():
        if provider.jwks_file is None:
            continue
        text = sources.jwks.get(provider.name)
        if text is None:
            problems.append(
                Problem(
                    (*provider.path, "jwks", "file"),
                    f"cannot read the JWKS file {provider.jwks_file}",
                )
            )
            continue
        out[jwks_name(provider.name)] = text
    return out, problems
