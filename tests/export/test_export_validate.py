"""Every exported file checked by the tool its platform uses, offline: hadolint (every
Dockerfile, any finding fails), the Compose specification's JSON schema,
``kubernetes-validate --strict`` (every object) and ``kubectl kustomize``, promtool (scrape
configs and rules), ``envoy --mode validate`` (the gateway config), and the dashboard's
structure against its provisioning."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from export_helpers import CASES, case_plan, render_case
from ruamel.yaml import YAML

from corral.broker import find_binary
from corral.export import Export
from corral.gateway import validate_config

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert found, f"{name} is needed to check exports (see docs/export.md)"
    return str(found)


def _write(export: Export, folder: Path) -> Path:
    for relative, text in export.files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    return folder


def _yaml_documents(path: Path) -> list[Any]:
    return [d for d in YAML(typ="safe").load_all(path.read_text()) if d is not None]


RENDERED: dict[Path, Export] = {}
CASE_OF: dict[Path, str] = {}
"""Folder -> the export written into it (for checks that compare with the render)."""


@pytest.fixture(scope="module", params=CASES)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    export = render_case(request.param)
    folder = _write(export, tmp_path_factory.mktemp(request.param))
    RENDERED[folder] = export
    CASE_OF[folder] = request.param
    return folder


def test_hadolint_finds_nothing(exported: Path) -> None:
    """hadolint has no finding at all (style included) on any generated Dockerfile."""
    files = sorted(exported.glob("docker/*.Dockerfile"))
    assert files
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", "--failure-threshold", "style", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    assert not result.stdout.strip(), result.stdout


def _compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendored.joinpath("compose-spec.json").read_text())
    return schema


def _compose_errors(document: Any) -> list[str]:
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification(exported: Path) -> None:
    """compose.yaml validates against the Compose specification's schema."""
    path = exported / "compose" / "compose.yaml"
    if not path.exists():
        pytest.fail("every case exports Compose")
    (document,) = _yaml_documents(path)
    assert _compose_errors(document) == []
    for service in document["services"].values():
        for config in service.get("configs", ()):
            mounted = document["configs"][config["source"]]["file"]
            assert (path.parent / mounted).is_file(), f"{mounted} is mounted but not exported"


def test_compose_references_resolve(exported: Path) -> None:
    """What the schema cannot see: every depends_on names a service, every named volume is
    declared, every ${VARIABLE} is a secret the export generates into .env or one of the
    manifest's own secrets (which the operator supplies)."""
    (document,) = _yaml_documents(exported / "compose" / "compose.yaml")
    services = document["services"]
    declared = set(document.get("volumes", {}))
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        for volume in service.get("volumes", ()):
            assert volume.split(":", 1)[0] in declared, f"{name}: {volume}"
    text = (exported / "compose" / "compose.yaml").read_text().replace("$$", "")
    variables = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    supplied = {v for s in case_plan(CASE_OF[exported]).services.values() for v in s.secrets}
    assert variables == set(RENDERED[exported].secrets) | supplied


def test_compose_schema_check_can_fail() -> None:
    """The schema check rejects what Compose would (an unknown key, a wrong type)."""
    assert _compose_errors({"services": {"web": {"image": "x", "replica": 2}}})
    assert _compose_errors({"services": {"web": {"image": "x", "deploy": {"replicas": []}}}})


def _kubernetes_files(exported: Path) -> list[Path]:
    files = sorted(exported.glob("kubernetes/*.yaml"))
    return [p for p in files if p.name != "kustomization.yaml"]


def test_kubernetes_objects_validate_strictly(exported: Path) -> None:
    """kubernetes-validate --strict accepts every object (unknown fields are errors)."""
    files = _kubernetes_files(exported)
    if not files:
        return  # ridehail on SQLite: refused for Kubernetes (test_export_mapping checks it)
    result = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", "--quiet", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # It knows Kubernetes' own kinds only: the CRD kinds are checked against their
    # schemas in test_export_k8s_crds.py (KEDA's ScaledObject in test_export_autoscale.py);
    # any other unknown kind is a mistake.
    warned = [line for line in result.stdout.splitlines() if line.startswith("WARN")]
    assert all(
        re.search(r"kind (HTTPRoute|ServiceMonitor|ScaledObject) with", w) for w in warned
    ), warned
    kinds = {d["kind"] for p in files for d in _yaml_documents(p)}
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "NetworkPolicy"} <= kinds


def test_kubernetes_references_resolve(exported: Path) -> None:
    """What the schemas cannot see: every ConfigMap, claim and Secret-free reference a pod
    makes exists, and every Service and PodDisruptionBudget selects some pod template."""
    objects = [d for p in _kubernetes_files(exported) for d in _yaml_documents(p)]
    if not objects:
        return
    names = {(d["kind"], d["metadata"]["name"]) for d in objects}
    templates = []
    for workload in (d for d in objects if d["kind"] in ("Deployment", "StatefulSet")):
        template = workload["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        templates.append(labels)
        pod = template["spec"]
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", ())}
        for volume in pod.get("volumes", ()):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names
        mounted = {v["name"] for v in pod.get("volumes", ())} | claims
        for container in pod["containers"]:
            for source in container.get("envFrom", ()):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names
            for mount in container.get("volumeMounts", ()):
                assert mount["name"] in mounted, f"{container['name']}: {mount['name']}"
    for chooser in (d for d in objects if d["kind"] in ("Service", "PodDisruptionBudget")):
        spec = chooser["spec"]
        wanted = spec.get("selector", {}).get("matchLabels") or spec["selector"]
        assert any(wanted.items() <= labels.items() for labels in templates), chooser["metadata"]


def test_kubernetes_validation_can_fail(tmp_path: Path) -> None:
    """The same command rejects an object with a misspelt field."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selektor: {}}\n")
    result = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", "--quiet", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0


def test_kustomization_builds_every_listed_file(exported: Path) -> None:
    """kubectl kustomize builds the folder: the kustomization lists only files that exist,
    and every object ends up in the namespace."""
    folder = exported / "kubernetes"
    if not (folder / "kustomization.yaml").exists():
        return
    result = subprocess.run(
        [_tool("kubectl"), "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    (kustomization,) = _yaml_documents(folder / "kustomization.yaml")
    built = [d for d in YAML(typ="safe").load_all(result.stdout) if d]
    namespaces = {d["metadata"].get("namespace") for d in built if d["kind"] != "Namespace"}
    assert namespaces == {kustomization["namespace"]}
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}


def _promtool(*args: str) -> None:
    result = subprocess.run([_tool("promtool"), *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_configs_and_rules(exported: Path) -> None:
    """promtool checks the Compose scrape config (with the rules it loads) and the rules.

    Debian's Prometheus 2.42 is built without Kubernetes service discovery, so its promtool
    rejects ``kubernetes_sd_configs`` itself: the Kubernetes config is checked with that
    one block swapped for a static target (relabelling, rule files and the rest still
    checked by promtool) and the discovery block is checked here.
    """
    folder = exported / "prometheus"
    _promtool("check", "config", str(folder / "compose.yml"))
    _promtool("check", "rules", str(folder / "alerts.yml"))
    (config,) = _yaml_documents(folder / "kubernetes.yml")
    (job,) = config["scrape_configs"]
    (discovery,) = job.pop("kubernetes_sd_configs")
    assert discovery["role"] == "pod"
    assert len(discovery["namespaces"]["names"]) == 1
    job["static_configs"] = [{"targets": ["pod:8000"]}]
    swapped = folder / "kubernetes-static.yml"
    with swapped.open("w") as out:
        YAML(typ="safe").dump(config, out)
    _promtool("check", "config", str(swapped))


def _gateway_configs(exported: Path) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(where, envoy config, jwks file -> text) of the Compose and Kubernetes gateways."""
    out = []
    compose = exported / "compose" / "gateway"
    if (compose / "envoy.json").exists():
        jwks = {p.name: p.read_text() for p in (compose / "jwks").glob("*.json")}
        out.append(("compose", json.loads((compose / "envoy.json").read_text()), jwks))
    kubernetes = exported / "kubernetes" / "corral-gateway.yaml"
    if kubernetes.exists():
        (config_map,) = [d for d in _yaml_documents(kubernetes) if d["kind"] == "ConfigMap"]
        data = dict(config_map["data"])
        config = json.loads(data.pop("envoy.json"))
        out.append(("kubernetes", config, data))
    return out


def test_envoy_accepts_the_gateway_config(exported: Path, tmp_path: Path) -> None:
    """envoy --mode validate accepts each platform's gateway config (JWKS files, which the
    validator reads, placed where the config says they are mounted)."""
    for where, config, jwks in _gateway_configs(exported):
        text = json.dumps(config)
        for name, document in jwks.items():
            local = tmp_path / f"{where}-{name}"
            local.write_text(document)
            text = text.replace(f"/etc/envoy/jwks/{name}", str(local))
        result = validate_config(json.loads(text))
        assert result.ok, f"{where}: {result.output[-2000:]}"
        clusters = [c for c in config["static_resources"]["clusters"] if c["type"] != "STATIC"]
        assert clusters
        assert all(c["type"] == "STRICT_DNS" for c in clusters)


def _nats_configs(exported: Path) -> list[str]:
    out = []
    compose = exported / "compose" / "nats" / "nats-server.conf"
    if compose.exists():
        out.append(compose.read_text())
    kubernetes = exported / "kubernetes" / "corral-nats.yaml"
    if kubernetes.exists():
        (config_map,) = [d for d in _yaml_documents(kubernetes) if d["kind"] == "ConfigMap"]
        out.append(config_map["data"]["nats-server.conf"])
    return out


def _nats_test(text: str, folder: Path) -> subprocess.CompletedProcess[str]:
    path = folder / "nats-server.conf"
    path.write_text(text)
    return subprocess.run(
        [find_binary(), "-t", "-c", str(path)], capture_output=True, text=True, check=False
    )


def test_nats_server_accepts_its_config(exported: Path, tmp_path: Path) -> None:
    """nats-server -t (test the configuration and exit) accepts each platform's config,
    with JetStream fsyncing every write; and rejects a broken one."""
    configs = _nats_configs(exported)
    for text in configs:
        assert "sync_interval: always" in text
        result = _nats_test(text, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    assert _nats_test("listen: [\n", tmp_path).returncode != 0


def test_grafana_dashboard_is_provisioned_and_well_formed(exported: Path) -> None:
    """The dashboard parses, its panels have unique ids and non-overlapping places, and
    every query names the data source the provisioning file creates."""
    (dashboard_file,) = sorted(exported.glob("grafana/dashboards/*.json"))
    dashboard = json.loads(dashboard_file.read_text())
    (datasources,) = _yaml_documents(exported / "grafana/provisioning/datasources/corral.yaml")
    (providers,) = _yaml_documents(exported / "grafana/provisioning/dashboards/corral.yaml")
    uids = {d["uid"] for d in datasources["datasources"]}
    assert providers["providers"][0]["type"] == "file"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for dx in range(grid["w"]):
            for dy in range(grid["h"]):
                cell = (grid["x"] + dx, grid["y"] + dy)
                assert cell not in cells, f"panel {panel['title']!r} overlaps another"
                cells.add(cell)
        assert panel["datasource"]["uid"] in uids
        assert panel["targets"]
        assert all(t["datasource"]["uid"] in uids for t in panel["targets"])
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
