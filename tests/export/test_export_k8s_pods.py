"""What every Kubernetes pod of the export gets: probes from all three checks, requests and
limits (the manifest's, else documented defaults, with a note), and a stop sequence that
lets endpoints propagate before SIGTERM (preStop sleep, covered by the grace period)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from ruamel.yaml import YAML

from corral.export import Export, Target, render
from corral.export._k8s_objects import PRESTOP_SECONDS
from corral.manifest import parse
from corral.plan import Plan, resolve


def _plan(services: str, rest: str = "") -> Plan:
    text = f"name: demo\nservices:\n{services}{rest}"
    return resolve(parse(text, "/corral/demo/corral.yaml"), python=sys.executable)


def _objects(export: Export, name: str) -> dict[str, dict[str, Any]]:
    documents = YAML(typ="safe").load_all(export.files[f"kubernetes/{name}.yaml"])
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in documents}


def _pod(export: Export, name: str) -> dict[str, Any]:
    objects = _objects(export, name)
    workload = objects.get(f"Deployment/{name}") or objects[f"StatefulSet/{name}"]
    pod: dict[str, Any] = workload["spec"]["template"]["spec"]
    return pod


def _container(export: Export, name: str, container: str | None = None) -> dict[str, Any]:
    (found,) = [c for c in _pod(export, name)["containers"] if c["name"] == (container or name)]
    return found


def test_each_check_becomes_its_probe() -> None:
    """readiness, liveness and startup become readinessProbe, livenessProbe and
    startupProbe with the checks' own numbers; a service with no startup check has none.
    (Already so before this change: kept as the item's proof.)"""
    plan = _plan(
        "  web: {app: w:svc, database: none, readiness: {http: /readyz, period: 2s},"
        " liveness: {http: /healthz, period: 10s},"
        " startup: {http: /readyz, period: 3s, failure_threshold: 40, initial_delay: 1s}}\n"
        "  api: {app: a:svc, database: none, readiness: {tcp: true}}\n"
    )
    export = render(plan, [Target.KUBERNETES])
    web = _container(export, "web")
    assert web["startupProbe"] == {
        "httpGet": {"path": "/readyz", "port": "http"},
        "initialDelaySeconds": 1,
        "periodSeconds": 3,
        "timeoutSeconds": 1,
        "failureThreshold": 40,
        "successThreshold": 1,
    }
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["periodSeconds"] == 2
    api = _container(export, "api")
    assert "startupProbe" not in api
    assert api["readinessProbe"]["tcpSocket"] == {"port": "http"}


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (
            "",
            {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
        ),
        (
            ", resources: {cpu: 2}",
            {"requests": {"cpu": "2", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
        ),
        (
            ", resources: {memory: 1Gi}",
            {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
        ),
        (
            ", resources: {cpu: 250m, memory: 512Mi}",
            {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}},
        ),
    ],
)
def test_resources_default_what_the_manifest_leaves_out(
    resources: str, expected: dict[str, Any]
) -> None:
    """Every service container has requests and a memory limit: the manifest's, and for
    what it leaves out cpu 100m and memory 256Mi; never a CPU limit. A default taken is
    said in a note at the service."""
    plan = _plan(f"  web: {{app: w:svc, database: none{resources}}}\n")
    export = render(plan, [Target.KUBERNETES])
    assert _container(export, "web")["resources"] == expected
    notes = [n for n in export.notes if n.path[:2] == ("services", "web")]
    if "cpu: 250m" in resources:
        assert notes == []
    else:
        (note,) = notes
        assert "default" in note.message
        assert "resources:" in note.message


def test_corral_components_have_requests_and_memory_limits() -> None:
    """The gateway, NATS and its exporter get requests and a memory limit too (measured
    sizes in docs/export.md), so no pod of the system is BestEffort."""
    plan = _plan(
        "  web: {app: w:svc, database: none}\n",
        "gateway:\n  routes:\n    - {match: {prefix: /}, service: web}\n"
        "events:\n  topics:\n    a.b: {producers: [web], consumers: [web]}\n",
    )
    export = render(plan, [Target.KUBERNETES])
    for name, container in (
        ("corral-gateway", "envoy"),
        ("corral-nats", "nats"),
        ("corral-nats", "exporter"),
    ):
        resources = _container(export, name, container)["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"}, (name, container)
        assert resources["limits"] == {"memory": resources["requests"]["memory"]}


@pytest.mark.parametrize("grace", ["10s", "25s", "1.5s"])
def test_prestop_sleeps_and_the_grace_period_covers_it(grace: str) -> None:
    """Services and the gateway sleep before SIGTERM (endpoint removal reaches kube-proxy
    and the gateway first); terminationGracePeriodSeconds is that sleep plus the
    manifest's stop_grace_period, so the process still gets its whole grace after
    SIGTERM (its CORRAL_STOP_GRACE_PERIOD stays the manifest's)."""
    plan = _plan(
        f"  web: {{app: w:svc, database: none, stop_grace_period: {grace}}}\n",
        "gateway:\n  routes:\n    - {match: {prefix: /}, service: web}\n",
    )
    export = render(plan, [Target.KUBERNETES])
    seconds = {"10s": 10, "25s": 25, "1.5s": 2}[grace]
    assert _container(export, "web")["lifecycle"] == {
        "preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}
    }
    assert _pod(export, "web")["terminationGracePeriodSeconds"] == seconds + PRESTOP_SECONDS
    env = _objects(export, "web")["ConfigMap/web-env"]["data"]
    assert float(env["CORRAL_STOP_GRACE_PERIOD"]) == {"10s": 10, "25s": 25, "1.5s": 1.5}[grace]
    envoy = _container(export, "corral-gateway", "envoy")
    assert envoy["lifecycle"] == {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}}
    gateway_grace = _pod(export, "corral-gateway")["terminationGracePeriodSeconds"]
    assert gateway_grace > PRESTOP_SECONDS
