"""``swarm/stack.yaml``: the Compose document as ``docker stack deploy`` (20.10) takes it."""

from __future__ import annotations

from typing import Any

from export_helpers import render_case
from ruamel.yaml import YAML


def _stack(case: str) -> dict[str, Any]:
    return dict(YAML(typ="safe").load(render_case(case).files["swarm/stack.yaml"]))


def test_stack_has_a_version_and_no_name_and_dependencies_as_a_list() -> None:
    stack = _stack("ridehail")
    assert stack["version"] == "3.8"
    assert "name" not in stack
    for name, service in stack["services"].items():
        assert isinstance(service.get("depends_on", []), list), name
        assert not {"build", "restart"} & set(service), name
        assert "start_interval" not in service.get("healthcheck", {}), name


def test_every_service_resolves_by_dns_round_robin_and_publishes_in_host_mode() -> None:
    services = _stack("hello")["services"]
    assert {s["deploy"]["endpoint_mode"] for s in services.values()} == {"dnsrr"}
    assert services["corral-gateway"]["ports"] == [
        {"target": 8080, "published": 8080, "protocol": "tcp", "mode": "host"}
    ]
    assert {"type": "tmpfs", "target": "/tmp"} in services["corral-gateway"]["volumes"]


def test_one_shot_setup_job_is_never_restarted_and_mounted_files_come_along() -> None:
    export = render_case("ridehail")
    stack = YAML(typ="safe").load(export.files["swarm/stack.yaml"])
    setup = stack["services"]["corral-postgres-setup"]
    assert setup["deploy"]["restart_policy"] == {"condition": "none"}
    for config in stack["configs"].values():
        assert f"swarm/{config['file'].removeprefix('./')}" in export.files
