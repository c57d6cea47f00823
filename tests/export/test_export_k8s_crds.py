"""The optional custom resources of the Kubernetes export: ServiceMonitors
(``--servicemonitor``) and Gateway API HTTPRoutes (``--gateway-api``), checked against
their upstream CRDs' schemas (vendored in tests/export/crds/, unknown fields are errors)
and against the objects they point at."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from export_helpers import case_plan, kubernetes_documents, render_case
from k8s_netpol import matches
from ruamel.yaml import YAML
from typer.testing import CliRunner

from corral.cli import app
from corral.export import Export, ExportError, ExportOptions, Target, render
from corral.export._k8s_gateway_api import MAX_RULES, gateway_duration
from corral.manifest import parse
from corral.plan import Plan, resolve

CRDS = Path(__file__).parent / "crds"
SCHEMAS = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute-v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-v1.json",
}
_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def _strict(schema: Any) -> Any:
    """Unknown fields are errors wherever the schema lists the fields (as the API server
    with field validation Strict), except where it preserves unknown fields."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) if k not in ("properties",) else v for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    return out


def _validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    schema = json.loads((CRDS / SCHEMAS[(api_version, kind)]).read_text())
    return jsonschema.Draft4Validator(_strict(schema))


def _httproute_cel(document: dict[str, Any]) -> list[str]:
    """The HTTPRoute CRD's CEL rules this export could break, evaluated here: fewer than
    128 matches per HTTPRoute, and Exact/PathPrefix values that are clean paths."""
    rules = document["spec"].get("rules", [])
    errors = []
    if sum(len(r.get("matches", [])) for r in rules) >= 128:
        errors.append("rules: 128 matches or more")
    for rule in rules:
        for match in rule.get("matches", []):
            path = match.get("path", {})
            value = path.get("value", "")
            if path.get("type") in ("Exact", "PathPrefix") and (
                not value.startswith("/")
                or not re.match(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$", value)
                or any(s in value for s in ("//", "/./", "/../", "%2f", "%2F", "#"))
                or value.endswith(("/.", "/.."))
            ):
                errors.append(f"path {value!r} is refused")
    return errors


def crd_errors(document: dict[str, Any]) -> list[str]:
    """What the CRD's schema (and, for HTTPRoute, the CEL rules it could break) rejects,
    plus the metadata rules the API server applies."""
    validator = _validator(document["apiVersion"], document["kind"])
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    if document["kind"] == "HTTPRoute":
        errors += _httproute_cel(document)
    meta = document.get("metadata", {})
    extra = set(meta) - {"name", "namespace", "labels", "annotations"}
    errors += [f"metadata: unexpected {sorted(extra)}"] if extra else []
    name = meta.get("name", "")
    if not (0 < len(name) <= 253 and jsonschema.Draft4Validator({"pattern": _NAME}).is_valid(name)):
        errors.append(f"metadata.name {name!r} is not a DNS subdomain")
    return errors


def _of(export: Export, kind: str) -> list[dict[str, Any]]:
    return [d for d in kubernetes_documents(export) if d["kind"] == kind]


def _ports(service: dict[str, Any]) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = service["spec"]["ports"]
    return ports


def _plan(text: str) -> Plan:
    return resolve(parse(text, "/corral/demo/corral.yaml"), python=sys.executable)


OPTIONS = ExportOptions(servicemonitor=True, gateway_api="infra/public")


def _ridehail(options: ExportOptions = OPTIONS) -> Export:
    """Ridehail on PostgreSQL with Prometheus, as the golden case, with ``options``."""
    return render(case_plan("ridehail"), [Target.KUBERNETES, Target.PROMETHEUS], options=options)


@pytest.mark.parametrize("case", ["full"])
def test_golden_crd_objects_follow_their_schemas(case: str) -> None:
    """The full golden exports both kinds, and every object passes its CRD's schema."""
    export = render_case(case)
    objects = [d for d in kubernetes_documents(export) if (d["apiVersion"], d["kind"]) in SCHEMAS]
    assert {d["kind"] for d in objects} == {"HTTPRoute", "ServiceMonitor"}
    for document in objects:
        assert crd_errors(document) == [], document["metadata"]["name"]


def test_ridehail_crd_objects_follow_their_schemas() -> None:
    """Ridehail's gateway (eight routes, methods, a stream without timeout) and its three
    monitors pass their schemas."""
    export = _ridehail()
    objects = _of(export, "HTTPRoute") + _of(export, "ServiceMonitor")
    assert len(objects) == 4
    for document in objects:
        assert crd_errors(document) == [], document["metadata"]["name"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["spec"]["rules"][0].update(timeout="1s"), "'timeout' was unexpected"),
        (
            lambda d: d["spec"]["rules"][0]["matches"][0]["path"].update(type="Prefix"),
            "'Prefix' is not one of",
        ),
        (lambda d: d["spec"]["rules"][0]["timeouts"].update(request="1.5s"), "does not match"),
        (lambda d: d["spec"]["rules"].extend([d["spec"]["rules"][0]] * 16), "is too long"),
        (lambda d: d["metadata"].update(name="Bad_Name"), "not a DNS subdomain"),
    ],
)
def test_the_httproute_check_can_fail(change: Any, expected: str) -> None:
    """A misspelt field, a wrong enum, a bad duration, too many rules, a bad name: each
    is rejected."""
    (route,) = _of(_ridehail(), "HTTPRoute")
    broken = copy.deepcopy(route)
    change(broken)
    assert any(expected in e for e in crd_errors(broken)), crd_errors(broken)


def test_the_servicemonitor_check_can_fail() -> None:
    """An endpoint field ServiceMonitor does not have is rejected."""
    monitor = _of(_ridehail(), "ServiceMonitor")[0]
    broken = copy.deepcopy(monitor)
    broken["spec"]["endpoints"][0]["metricsPath"] = "/metrics"
    assert any("'metricsPath' was unexpected" in e for e in crd_errors(broken))


def test_servicemonitors_scrape_what_the_pods_announce() -> None:
    """Each monitor selects exactly its Services (each service's own, never the headless
    ``-instances`` ones: no pod scraped twice), and its port and path are the ones the
    selected pods' ``prometheus.io/*`` annotations name; every target gets ``system`` and
    ``service``."""
    export = _ridehail()
    services = _of(export, "Service")
    workloads = {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in kubernetes_documents(export)
        if d["kind"] in ("Deployment", "StatefulSet")
    }
    expected = {
        "corral-services": {"auth", "rides", "matching", "payments", "fakepay", "tracking"},
        "corral-gateway": {"corral-gateway"},
        "corral-nats": {"corral-nats"},
    }
    for monitor in _of(export, "ServiceMonitor"):
        name = monitor["metadata"]["name"]
        chosen = [
            s for s in services if matches(monitor["spec"]["selector"], s["metadata"]["labels"])
        ]
        assert {s["metadata"]["name"] for s in chosen} == expected[name]
        (endpoint,) = monitor["spec"]["endpoints"]
        targets = {r["targetLabel"] for r in endpoint["relabelings"]}
        assert targets == {"system", "service"}
        for service in chosen:
            (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
            (pod,) = [
                t for t in workloads.values()
                if matches({"matchLabels": service["spec"]["selector"]}, t["metadata"]["labels"])
            ]  # fmt: skip
            annotations = pod["metadata"]["annotations"]
            named = {
                p["name"]: p["containerPort"]
                for c in pod["spec"]["containers"]
                for p in c.get("ports", ())
            }
            assert str(named[port["targetPort"]]) == annotations["prometheus.io/port"]
            assert endpoint["path"] == annotations["prometheus.io/path"]


def test_without_the_options_nothing_extra_is_exported_or_opened() -> None:
    """By default: no CRD objects (a cluster without the CRDs applies the folder), and
    no stats or metrics port on the gateway's and NATS' Services."""
    export = _ridehail(ExportOptions())
    assert not [p for p in export.files if p.endswith(("servicemonitors.yaml", "httproutes.yaml"))]
    ports = {
        (d["metadata"]["name"], p["name"])
        for d in _of(export, "Service")
        for p in d["spec"]["ports"]
    }
    assert ("corral-gateway", "stats") not in ports
    assert ("corral-nats", "metrics") not in ports
    (kustomization,) = YAML(typ="safe").load_all(export.files["kubernetes/kustomization.yaml"])
    assert "servicemonitors.yaml" not in kustomization["resources"]


def test_httproute_rules_mirror_the_gateway_routes() -> None:
    """One rule per route, in the manifest's order: its path kind and value, one match
    per method, the route's timeout (0s: none), and the Corral gateway's
    Service (which exists, port 80) as the only backend; attached to the Gateway named."""
    export = _ridehail()
    plan = case_plan("ridehail")
    (route,) = _of(export, "HTTPRoute")
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public",
         "namespace": "infra"}
    ]  # fmt: skip
    assert "hostnames" not in route["spec"]
    gateway = plan.gateway
    assert gateway is not None
    rules = route["spec"]["rules"]
    assert len(rules) == len(gateway.routes)
    by_name = dict(zip((r.name for r in gateway.routes), rules, strict=True))
    assert by_name["1-matching"]["matches"] == [
        {"path": {"type": "Exact", "value": "/drivers/me/availability"}, "method": "PUT"}
    ]
    assert by_name["0-auth"]["matches"] == [{"path": {"type": "PathPrefix", "value": "/auth"}}]
    assert by_name["2-rides"]["timeouts"] == {"request": "10s"}
    assert by_name["4-tracking"]["timeouts"] == {"request": "0s"}  # a live stream
    services = {
        (d["metadata"]["name"], p["port"]) for d in _of(export, "Service") for p in _ports(d)
    }
    for rule in rules:
        assert rule["backendRefs"] == [{"name": "corral-gateway", "port": 80}]
        assert ("corral-gateway", 80) in services


def test_httproutes_split_by_host_and_at_sixteen_rules() -> None:
    """Routes without a host fill HTTPRoutes of at most 16 rules; a host's routes get
    their own HTTPRoute with that hostname (its port left out, with a note); all valid."""
    routes = "".join(f"    - {{match: {{prefix: /r{i}}}, service: web}}\n" for i in range(20))
    routes += (
        "    - {match: {prefix: /, host: api.example.com:8443, methods: [GET, HEAD]}, "
        "service: web}\n"
    )
    plan = _plan(
        "name: demo\nservices:\n  web: {app: w:svc, database: none}\n"
        f"gateway:\n  routes:\n{routes}"
    )
    export = render(plan, [Target.KUBERNETES], options=ExportOptions(gateway_api="public"))
    routes_out = _of(export, "HTTPRoute")
    assert [(r["metadata"]["name"], len(r["spec"]["rules"]), r["spec"].get("hostnames"))
            for r in routes_out] == [
        ("corral-gateway", MAX_RULES, None),
        ("corral-gateway-2", 4, None),
        ("corral-gateway-3", 1, ["api.example.com"]),
    ]  # fmt: skip
    assert routes_out[2]["spec"]["rules"][0]["matches"] == [
        {"path": {"type": "PathPrefix", "value": "/"}, "method": "GET"},
        {"path": {"type": "PathPrefix", "value": "/"}, "method": "HEAD"},
    ]
    assert routes_out[0]["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}
    ]
    for route in routes_out:
        assert crd_errors(route) == []
    assert [n.path[-1] for n in export.notes if n.path[0] == "gateway"] == ["host"]


def test_httproutes_keep_under_128_matches() -> None:
    """Routes with many methods fill an HTTPRoute up to 127 matches (the CRD's CEL rule),
    then continue in the next."""
    methods = "[GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, CONNECT]"
    routes = "".join(
        f"    - {{match: {{prefix: /r{i}, methods: {methods}}}, service: web}}\n" for i in range(15)
    )
    plan = _plan(
        "name: demo\nservices:\n  web: {app: w:svc, database: none}\n"
        f"gateway:\n  routes:\n{routes}"
    )
    export = render(plan, [Target.KUBERNETES], options=ExportOptions(gateway_api="public"))
    out = _of(export, "HTTPRoute")
    assert [len(r["spec"]["rules"]) for r in out] == [14, 1]
    for route in out:
        assert crd_errors(route) == []
    too_many = copy.deepcopy(out[0])
    too_many["spec"]["rules"].append(out[1]["spec"]["rules"][0])
    assert "rules: 128 matches or more" in crd_errors(too_many)


@pytest.mark.parametrize("prefix", ["/a//b", "/a b", "/x/%2f", "/x/./y"])
def test_a_path_gateway_api_refuses_is_an_export_error(prefix: str) -> None:
    """A route path the HTTPRoute CRD would refuse is named at its manifest key."""
    plan = _plan(
        "name: demo\nservices:\n  web: {app: w:svc, database: none}\n"
        f"gateway:\n  routes:\n    - {{match: {{prefix: '{prefix}'}}, service: web}}\n"
    )
    render(plan, [Target.KUBERNETES])  # fine without --gateway-api
    with pytest.raises(ExportError) as caught:
        render(plan, [Target.KUBERNETES], options=ExportOptions(gateway_api="public"))
    (problem,) = caught.value.problems
    assert problem.path == ("gateway", "routes", 0, "match", "prefix")
    assert "Gateway API" in problem.message


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (15, "15s"),
        (1.5, "1s500ms"),
        (0.25, "250ms"),
        (3600, "1h"),
        (5400.5, "1h30m500ms"),
    ],
)
def test_gateway_duration(seconds: float, expected: str) -> None:
    """Gateway API durations: units up to hours, no fractions."""
    assert gateway_duration(seconds) == expected


@pytest.mark.parametrize("value", ["Public", "a/b/c", "-x", "ns/", "/gw"])
def test_a_bad_gateway_reference_is_named(value: str) -> None:
    """--gateway-api takes a Gateway's name or namespace/name; anything else is said
    at once, by option name."""
    problems = ExportOptions(gateway_api=value).problems()
    assert len(problems) == 1
    assert problems[0].startswith(f"--gateway-api {value!r}")


def test_gateway_api_without_a_gateway_is_refused() -> None:
    """A manifest with no gateway: section has nothing to attach: an export error."""
    plan = _plan("name: demo\nservices:\n  web: {app: w:svc, database: none}\n")
    with pytest.raises(ExportError) as caught:
        render(plan, [Target.KUBERNETES], options=ExportOptions(gateway_api="public"))
    (problem,) = caught.value.problems
    assert "no gateway" in problem.message
    assert problem.hint


def test_the_cli_writes_both_with_their_options(tmp_path: Path) -> None:
    """`corral export kubernetes --servicemonitor --gateway-api ns/gw` writes both files
    and lists them in the kustomization."""
    root = Path(__file__).resolve().parents[2]
    result = CliRunner().invoke(
        app,
        [
            "export", str(root / "examples/hello"), "kubernetes", "-o", str(tmp_path / "out"),
            "--servicemonitor", "--gateway-api", "infra/public",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "kubernetes"
    (kustomization,) = YAML(typ="safe").load_all((folder / "kustomization.yaml").read_text())
    assert {"servicemonitors.yaml", "httproutes.yaml"} <= set(kustomization["resources"])
    bad = CliRunner().invoke(
        app,
        ["export", str(root / "examples/hello"), "kubernetes", "-o", str(tmp_path / "x"),
         "--gateway-api", "Not/Valid/Ref"],
    )  # fmt: skip
    assert bad.exit_code != 0
    assert "--gateway-api 'Not/Valid/Ref'" in f"{bad.output}{bad.exception}"
    assert not (tmp_path / "x").exists()
