"""Table-driven: how manifest numbers and policies map onto what each platform expresses,
and what a target refuses (see corral.export._mapping and _kubernetes)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from ruamel.yaml import YAML

from corral.export import ExportError, ExportOptions, Sources, Target, render
from corral.export._mapping import (
    COMPOSE_RESTART,
    cpu_quantity,
    go_duration,
    healthcheck,
    kubernetes_probe,
    memory_quantity,
    whole_seconds,
)
from corral.export._text import to_yaml
from corral.manifest import RestartPolicy, parse
from corral.plan import CheckKind, CheckPlan, resolve


@pytest.mark.parametrize(
    ("seconds", "expected"), [(0.05, 1), (0.5, 1), (1.0, 1), (1.5, 2), (1.0000001, 1), (30, 30)]
)
def test_whole_seconds_round_up(seconds: float, expected: int) -> None:
    """Kubernetes seconds are whole and never stricter than the manifest (rounded up)."""
    assert whole_seconds(seconds) == expected


@pytest.mark.parametrize(("seconds", "expected"), [(0.5, "0.5s"), (10, "10s"), (90, "90s")])
def test_go_duration(seconds: float, expected: str) -> None:
    """Compose keeps fractions of a second."""
    assert go_duration(seconds) == expected


@pytest.mark.parametrize(
    ("cores", "expected"), [(0.5, "500m"), (2.0, "2"), (0.25, "250m"), (1.5, "1500m"), (1e-4, "1m")]
)
def test_cpu_quantity(cores: float, expected: str) -> None:
    """CPU as Kubernetes writes it: whole cores or millicores, never below 1m."""
    assert cpu_quantity(cores) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (256 * 2**20, "256Mi"),
        (2**30, "1Gi"),
        (10**9, "1G"),
        (1000, "1k"),
        (3072, "3Ki"),
        (1536, "1536"),
    ],
)
def test_memory_quantity_is_exact(size: int, expected: str) -> None:
    """Memory keeps the exact byte count (binary suffix when it divides, else decimal)."""
    assert memory_quantity(size) == expected


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (RestartPolicy.ALWAYS, "unless-stopped"),
        (RestartPolicy.ON_FAILURE, "on-failure"),
        (RestartPolicy.NEVER, "no"),
    ],
)
def test_compose_restart_policy(policy: RestartPolicy, expected: str) -> None:
    """Each restart policy has its Compose counterpart."""
    assert COMPOSE_RESTART[policy] == expected


HTTP = CheckPlan(CheckKind.HTTP, path="/readyz", period=0.5, timeout=2.0, failure_threshold=2)
TCP = CheckPlan(CheckKind.TCP, period=10.0, timeout=1.0, initial_delay=3.0)
COMMAND = CheckPlan(CheckKind.COMMAND, argv=("check", "--quick"), period=1.0)


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (HTTP, {"interval": "5s", "start_interval": "0.5s", "timeout": "2s", "retries": 2}),
        (TCP, {"interval": "10s", "timeout": "1s", "retries": 3, "start_period": "33s"}),
        (COMMAND, {"test": ["CMD", "check", "--quick"], "interval": "5s"}),
    ],
)
def test_healthcheck(check: CheckPlan, expected: dict[str, Any]) -> None:
    """A health check runs at most every 5 s (a process per check); a faster period is
    kept as the rate while starting; the initial delay adds to the start period."""
    rendered = healthcheck(check)
    assert {k: rendered[k] for k in expected} == expected
    assert ("start_interval" in rendered) == (check.period < 5)


def test_startup_check_widens_the_start_period() -> None:
    """A startup check's whole window (period x threshold) becomes the start period."""
    startup = CheckPlan(CheckKind.HTTP, path="/readyz", period=2.0, failure_threshold=30)
    assert healthcheck(HTTP, startup)["start_period"] == "60s"


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (
            HTTP,
            {
                "httpGet": {"path": "/readyz", "port": "http"},
                "periodSeconds": 1,
                "timeoutSeconds": 2,
                "failureThreshold": 2,
                "successThreshold": 1,
            },
        ),
        (
            TCP,
            {
                "tcpSocket": {"port": "http"},
                "initialDelaySeconds": 3,
                "periodSeconds": 10,
                "timeoutSeconds": 1,
                "failureThreshold": 3,
                "successThreshold": 1,
            },
        ),
        (
            COMMAND,
            {
                "exec": {"command": ["check", "--quick"]},
                "periodSeconds": 1,
                "timeoutSeconds": 1,
                "failureThreshold": 3,
                "successThreshold": 1,
            },
        ),
    ],
)
def test_kubernetes_probe(check: CheckPlan, expected: dict[str, Any]) -> None:
    """Each check kind becomes its probe with the check's own numbers."""
    assert kubernetes_probe(check) == expected


SIZED = "resources: {cpu: 1, memory: 1Gi}"
"""Sized, so that the Kubernetes export adds no note about default resources."""


def _plan(services: str) -> Any:
    text = f"name: demo\nservices:\n{services}"
    return resolve(parse(text, "/corral/demo/corral.yaml"), python=sys.executable)


@pytest.mark.parametrize(
    ("services", "refused"),
    [
        ("  web: {app: web:svc, replicas: 2}\n", True),
        ("  web: {app: web:svc, replicas: 2, database: postgres}\n", False),
        ("  web: {app: web:svc, replicas: 2, database: none}\n", False),
        ("  web: {app: web:svc, replicas: 1}\n", False),
    ],
)
def test_kubernetes_refuses_sqlite_with_replicas(services: str, refused: bool) -> None:
    """SQLite with several replicas is refused for Kubernetes (each pod its own file),
    naming the replicas key; Compose (one host, one shared volume) takes it."""
    plan = _plan(services)
    render(plan, [Target.COMPOSE], sources=Sources())
    if not refused:
        render(plan, [Target.KUBERNETES], sources=Sources())
        return
    with pytest.raises(ExportError) as caught:
        render(plan, [Target.KUBERNETES], sources=Sources())
    (problem,) = caught.value.problems
    assert problem.path == ("services", "web", "replicas")
    assert problem.hint
    assert "postgres" in problem.hint


@pytest.mark.parametrize(
    ("restart", "noted"), [("always", False), ("on-failure", True), ("never", True)]
)
def test_kubernetes_notes_restart_policies_it_cannot_express(restart: str, noted: bool) -> None:
    """A Deployment always restarts: other policies are exported as Always, with a note."""
    plan = _plan(f"  web: {{app: web:svc, database: none, restart: {restart}, {SIZED}}}\n")
    notes = render(plan, [Target.KUBERNETES]).notes
    assert [n.path for n in notes] == ([("services", "web", "restart")] if noted else [])


def test_compose_escapes_dollars_in_values() -> None:
    """A literal ``$`` in an env value is written ``$$``, so Compose does not interpolate it."""
    plan = _plan("  web: {app: web:svc, env: {PRICE: '$5'}}\n")
    compose = render(plan, [Target.COMPOSE]).files["compose/compose.yaml"]
    assert "PRICE: $$5" in compose


@pytest.mark.parametrize(
    "value", ["no", "on", "Off", "y", "8000", "0.5", "1:20", "2026-01-01", "~"]
)
def test_yaml_keeps_strings_that_yaml_1_1_would_misread(value: str) -> None:
    """A string a YAML 1.1 reader (Kubernetes, older Compose) takes for a boolean, number,
    null or date is written quoted, so it is read back as the same string."""
    reader = YAML(typ="safe", pure=True)
    reader.version = (1, 1)
    assert reader.load(to_yaml([{"key": value}])) == {"key": value}


@pytest.mark.parametrize(
    ("options", "wrong"),
    [
        (ExportOptions(namespace="Shop_Prod"), "--namespace"),
        (ExportOptions(tag="1.0 beta"), "--tag"),
        (ExportOptions(registry="GHCR.io/Acme"), "--registry"),
        (ExportOptions(volume_size="5GB"), "--volume-size"),
    ],
)
def test_options_the_platforms_would_reject_are_named(options: ExportOptions, wrong: str) -> None:
    """An option Kubernetes or a registry would refuse later is reported now, by name."""
    (problem,) = options.problems()
    assert problem.startswith(wrong)


def test_good_options_have_no_problems() -> None:
    """Registry with a port and path, a version tag, a namespace and a size pass."""
    options = ExportOptions(
        registry="registry.example.com:5000/shop/", tag="v1.2.3", namespace="shop-prod"
    )
    assert options.problems() == []


def test_compose_names_each_replica_after_its_container() -> None:
    """The Compose command gives each replica CORRAL_INSTANCE <service>-<hostname> (its
    container id) and then runs the service itself in the shell's place; a ``$`` in the
    manifest's command reaches it unchanged."""
    plan = _plan("  web: {command: [printf, '%s $x', '$CORRAL_INSTANCE'], replicas: 2}\n")
    compose = YAML(typ="safe").load(render(plan, [Target.COMPOSE]).files["compose/compose.yaml"])
    command = compose["services"]["web"]["command"]
    unescaped = [part.replace("$$", "$") for part in command]  # what Compose hands Docker
    env = {"PATH": os.environ["PATH"], "CORRAL_SERVICE": "web", "HOSTNAME": "3f2a1b4c5d6e"}
    done = subprocess.run(unescaped, env=env, capture_output=True, text=True, check=True)
    assert done.stdout == "$CORRAL_INSTANCE $x"
    probe = [*unescaped[:4], "sh", "-c", 'printf %s "$CORRAL_INSTANCE"']
    shown = subprocess.run(probe, env=env, capture_output=True, text=True, check=True)
    assert shown.stdout == "web-3f2a1b4c5d6e"


def test_secrets_are_exported_as_references_never_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A service's secrets become secretKeyRefs to a Secret the operator creates (with a
    note naming its keys) and required Compose variables; the value itself goes nowhere."""
    monkeypatch.setenv("WEB_TOKEN_SOURCE", "s3cr3t-value")
    plan = _plan(
        "  web: {app: web:svc, database: none, secrets: {TOKEN: {env: WEB_TOKEN_SOURCE}}, "
        f"{SIZED}}}\n"
    )
    export = render(plan, [Target.KUBERNETES, Target.COMPOSE], sources=Sources())
    assert not any("s3cr3t-value" in text for text in export.files.values())
    deployment = next(
        o for o in YAML().load_all(export.files["kubernetes/web.yaml"]) if o["kind"] == "Deployment"
    )
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    token = next(v for v in env if v["name"] == "TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "web-secrets", "key": "TOKEN"}
    assert [n.path for n in export.notes] == [("services", "web", "secrets")]
    compose = YAML().load(export.files["compose/compose.yaml"])
    assert compose["services"]["web"]["environment"]["TOKEN"].startswith("${TOKEN:?")
