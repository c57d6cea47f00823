"""Compose's ``deploy`` keys for ``docker stack deploy``: start-first rolling updates
gated by the health check and rolled back on failure; one-shot jobs never restarted."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from corral.export import ExportOptions, Sources, Target, render
from corral.manifest import parse
from corral.plan import resolve


def _compose(tmp_path: Path, services: dict[str, Any]) -> dict[str, Any]:
    path = tmp_path / "corral.yaml"
    text = json.dumps({"name": "jobs", "services": services})
    path.write_text(text)
    plan = resolve(parse(text, path), python=sys.executable)
    export = render(plan, [Target.COMPOSE], options=ExportOptions(), sources=Sources())
    return dict(YAML(typ="safe").load(export.files["compose/compose.yaml"]))


def test_services_update_start_first_health_gated_with_rollback(tmp_path: Path) -> None:
    compose = _compose(
        tmp_path,
        {"web": {"command": ["python", "-m", "web"], "database": "none",
                 "readiness": {"http": "/readyz", "period": "2s"}}},
    )  # fmt: skip
    deploy = compose["services"]["web"]["deploy"]
    assert deploy["update_config"] == {
        "parallelism": 1,
        "order": "start-first",
        "failure_action": "rollback",
        "monitor": "7s",  # readiness period x failure threshold + timeout
    }
    assert deploy["rollback_config"]["order"] == "start-first"
    assert deploy["restart_policy"]["condition"] == "any"


def test_one_shot_job_is_not_restarted_and_fixed_port_updates_stop_first(tmp_path: Path) -> None:
    compose = _compose(
        tmp_path,
        {
            "job": {"command": ["python", "-m", "job"], "database": "none",
                    "restart": {"policy": "never"}, "readiness": None},
            "edge": {"command": ["python", "-m", "edge"], "database": "none", "port": 8080},
        },
    )  # fmt: skip
    job, edge = compose["services"]["job"]["deploy"], compose["services"]["edge"]["deploy"]
    assert job["restart_policy"]["condition"] == "none"
    assert compose["services"]["job"]["restart"] == "no"
    assert edge["update_config"]["order"] == "stop-first"  # one host port per node
