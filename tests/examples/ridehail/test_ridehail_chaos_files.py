"""examples/ridehail/chaos/: every experiment file loads, and names only what the
ridehail system has (its services, instances, gateway and event bus), so none fails at
preflight when run against it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from corral.chaos import load, preflight
from corral.manifest import load as load_manifest
from corral.plan import resolve
from corral.runtime.status import SystemStatus

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "ridehail"
FILES = sorted((EXAMPLE / "chaos").glob("*.yaml"))


def ridehail_status() -> SystemStatus:
    """What a running ridehail would say about itself (from its plan; nothing started)."""
    plan = resolve(load_manifest(EXAMPLE / "corral.yaml"), python=sys.executable)
    services = {
        name: {
            "replicas": s.replicas,
            "ready": s.replicas,
            "instances": s.replicas,
            "component": False,
        }
        for name, s in plan.services.items()
    }
    instances = [
        {
            "service": name,
            "instance": f"{name}-{n}",
            "host": "127.0.0.1",
            "port": 1,
            "state": "running",
        }
        for name, s in plan.services.items()
        for n in range(1, s.replicas + 1)
    ]
    return SystemStatus.model_validate(
        {
            "system": plan.system,
            "state": "running",
            "pid": 1,
            "manifest": "corral.yaml",
            "state_dir": ".corral",
            "started_at": 0.0,
            "registry_version": 1,
            "services": services,
            "instances": instances,
            "gateway_url": "http://127.0.0.1:1",
            "nats_url": "nats://127.0.0.1:1",
            "nats_embedded": True,
        }
    )


def test_the_five_promised_experiments_are_there() -> None:
    """A kill storm, a provider outage, a NATS restart, matching paused, a rides DB
    outage (the README promises these)."""
    assert {f.stem for f in FILES} >= {
        "replica-kill-storm",
        "payment-outage",
        "nats-restart",
        "matching-paused",
        "rides-db-outage",
    }


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_an_experiment_loads_and_names_only_what_ridehail_has(path: Path) -> None:
    """Valid against the schema, and preflight finds nothing missing."""
    experiment = load(path)
    assert preflight(experiment, ridehail_status()) == []
    commands = [
        s for step in experiment.method for s in (step.steps or [step]) if s.action == "command"
    ]
    for step in commands:  # the commands run from the example folder or name it
        assert step.cwd == ".." or "-f" in (step.run or []), step.label
