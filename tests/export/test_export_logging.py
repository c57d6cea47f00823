"""`corral export logging`: the OpenTelemetry Collector's configuration for the services'
logs. The collector binary is not installable here (neither PyPI nor Debian ships it), so
its files are checked as far as this machine can: golden files, the collector's own
rules for a configuration (every component a pipeline names is defined, of a type the
contrib distribution has; the files merge as ``--config A --config B`` does), the SDK's
field names against the parser's, the Compose specification's schema for the Compose
file, and ``kubernetes-validate --strict`` and ``kubectl kustomize`` for Kubernetes.

Regenerate the golden files after an intended change with ``CORRAL_REGEN_GOLDEN=1``."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from export_helpers import SDK, case_manifest
from ruamel.yaml import YAML

from corral.export import Export, ExportOptions, Target, render, source_name
from corral.plan import resolve
from corral.sdk._logging import ECS_FIELDS

GOLDEN = Path(__file__).parent / "logging_golden"
CASES = ("hello", "ridehail")
REGEN = os.environ.get("CORRAL_REGEN_GOLDEN") == "1"
BIN = Path(sys.executable).parent

# Component types of otelcol-contrib this configuration may use (its `components` list).
KNOWN = {
    "receivers": {"filelog"},
    "processors": {"memory_limiter", "resource", "batch"},
    "exporters": {"elasticsearch", "otlphttp"},
}
# Stanza operator types (pkg/stanza/operator) the filelog receiver accepts.
OPERATORS = {
    "container",
    "json_parser",
    "move",
    "remove",
    "severity_parser",
    "time_parser",
    "trace_parser",
}


def _render(case: str, **options: Any) -> Export:
    manifest = case_manifest(case)
    plan = resolve(manifest, python=sys.executable)
    source = source_name(manifest.path, manifest.overlay)
    chosen = ExportOptions(sdk_requirement=SDK, source=source, **options)
    return render(plan, [Target.LOGGING], options=chosen)


def _load(text: str) -> Any:
    return YAML(typ="safe").load(io.StringIO(text))


def _merge(base: Any, over: Any) -> Any:
    """The collector's merge of two --config files: maps deep, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    return over


@pytest.mark.parametrize("case", CASES)
def test_golden_logging_export(case: str) -> None:
    """The rendered logging/ folder equals the golden one, byte for byte."""
    export = _render(case)
    folder = GOLDEN / case
    if REGEN:
        shutil.rmtree(folder, ignore_errors=True)
        for relative, text in export.files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(text)
    expected = {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}
    assert sorted(export.files) == sorted(expected)
    for relative, text in export.files.items():
        assert text == expected[relative], f"{case}: {relative} differs; regenerate and review"


def _check_collector(config: dict[str, Any]) -> list[str]:
    """What the collector would refuse at start: a pipeline naming an undefined
    component, a component of a type it does not have, an unknown operator."""
    problems = []
    for kind, known in KNOWN.items():
        for name in config.get(kind, {}):
            if name.split("/", 1)[0] not in known:
                problems.append(f"{kind}: unknown type {name}")
    for pipeline, parts in config["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            if kind != "processors" and not parts.get(kind):
                problems.append(f"{pipeline}: no {kind}")
            for name in parts.get(kind, []):
                if name not in config.get(kind, {}):
                    problems.append(f"{pipeline}: {name} is not defined in {kind}")
    for receiver in config["receivers"].values():
        for op in receiver.get("operators", []):
            if op["type"] not in OPERATORS:
                problems.append(f"unknown operator {op['type']}")
    return problems


@pytest.mark.parametrize("platform", ["compose", "kubernetes"])
@pytest.mark.parametrize("backend", ["to-elasticsearch.yaml", "to-loki.yaml"])
def test_each_collector_and_backend_merge_into_a_valid_configuration(
    platform: str, backend: str
) -> None:
    """collector.yaml merged with either backend has one logs pipeline from the files to
    that backend, with every component defined; environment references are `${env:X}`."""
    files = _render("ridehail").files
    collector = _load(files[f"logging/{platform}/collector.yaml"])
    assert _check_collector(collector) == [  # the backend is missing on its own
        "logs: no exporters"
    ]
    merged = _merge(collector, _load(files[f"logging/{backend}"]))
    assert _check_collector(merged) == []
    logs = merged["service"]["pipelines"]["logs"]
    assert logs["receivers"] == ["filelog/corral"]
    assert len(logs["exporters"]) == 1
    text = files[f"logging/{backend}"]
    assert re.findall(r"\$\{(?!env:)", text) == []


def test_the_check_finds_what_the_collector_refuses() -> None:
    """A pipeline naming an undefined exporter, or an unknown type, is reported."""
    config = _load(_render("hello").files["logging/compose/collector.yaml"])
    config["exporters"] = {"kafka": {}}
    config["service"]["pipelines"]["logs"]["exporters"] = ["elasticsearch"]
    assert _check_collector(config) == [
        "exporters: unknown type kafka",
        "logs: elasticsearch is not defined in exporters",
    ]


def test_parser_reads_the_names_the_sdk_writes() -> None:
    """Every ECS name the collector moves back is one the SDK's ecs format writes, and
    every default name it parses is one the SDK's json format writes (a rename in the
    SDK fails here, not in someone's Kibana)."""
    collector = _load(_render("hello").files["logging/compose/collector.yaml"])
    operators = collector["receivers"]["filelog/corral"]["operators"]
    moved = {
        op["from"]: op["to"]
        for op in operators
        if op["type"] == "move" and op["id"].startswith("from-ecs-")
    }
    ecs_of = {f'attributes["{ecs}"]': f'attributes["{name}"]' for name, ecs in ECS_FIELDS.items()}
    assert moved
    for source, target in moved.items():
        assert ecs_of.get(source) == target, (source, target)
    read = {
        json.dumps(op.get("parse_from") or op.get("from"))
        for op in operators
        if op["type"] in {"severity_parser", "time_parser", "move"}
    }
    for name in ("level", "timestamp", "service", "instance", "event"):
        assert json.dumps(f'attributes["{name}"]') in read, name
    [trace] = [op for op in operators if op["type"] == "trace_parser"]
    assert trace["trace_id"]["parse_from"] == 'attributes["trace_id"]'


def test_kubernetes_reads_only_the_systems_namespace() -> None:
    """The collector includes the pod logs of the export's namespace only."""
    files = _render("hello", namespace="shop").files
    collector = _load(files["logging/kubernetes/collector.yaml"])
    assert collector["receivers"]["filelog/corral"]["include"] == ["/var/log/pods/shop_*/*/*.log"]
    daemonset = [d for d in YAML(typ="safe").load_all(files["logging/kubernetes/daemonset.yaml"])]
    assert {d["metadata"]["namespace"] for d in daemonset} == {"shop"}


def _tool(name: str) -> str:
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert found, f"{name} is needed to check exports (see docs/export.md)"
    return str(found)


def test_compose_file_follows_the_compose_specification() -> None:
    """The collector's Compose file validates against the Compose specification."""
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendored.joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    document = _load(_render("ridehail").files["logging/compose/compose.logging.yaml"])
    assert [e.message for e in validator.iter_errors(document)] == []


def test_kubernetes_objects_validate_and_kustomize_builds(tmp_path: Path) -> None:
    """kubernetes-validate --strict accepts the DaemonSet and ServiceAccount, and kubectl
    kustomize builds logging/ into them and the ConfigMap with the three files."""
    for relative, text in _render("ridehail").files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    checked = subprocess.run(
        [
            _tool("kubernetes-validate"),
            "--strict",
            "--quiet",
            str(tmp_path / "logging/kubernetes/daemonset.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    built = subprocess.run(
        [_tool("kubectl"), "kustomize", str(tmp_path / "logging")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    objects = list(YAML(typ="safe").load_all(built.stdout))
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ConfigMap", "DaemonSet", "ServiceAccount"]
    [config] = [o for o in objects if o["kind"] == "ConfigMap"]
    assert sorted(config["data"]) == ["collector.yaml", "to-elasticsearch.yaml", "to-loki.yaml"]
    [daemonset] = [o for o in objects if o["kind"] == "DaemonSet"]
    volume = daemonset["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == config["metadata"]["name"]  # the hashed name
