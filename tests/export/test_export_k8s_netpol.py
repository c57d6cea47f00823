"""The exported NetworkPolicies, evaluated: exactly the declared paths are open (gateway to
routed services, ``calls:``, NATS for services with topics, PostgreSQL, DNS, the monitoring
scrape when exported), and nothing else; plus the evaluator's own table of cases."""

from __future__ import annotations

import itertools
import json
import sys
from typing import Any

import pytest
from export_helpers import CASES, GOLDEN, case_plan, kubernetes_documents, render_case
from k8s_netpol import Cluster, Endpoint, External, Pod, matches, pods_of

from corral.export import Export, ExportOptions, Target, render
from corral.export._k8s_network import DEFAULT_DENY
from corral.manifest import DatabaseEngine, parse
from corral.plan import Plan, resolve

# ---------------------------------------------------------------- the evaluator itself

FRONT = Pod("front", "shop", {"role": "frontend"}, {"http": 8080})
DB = Pod("db", "shop", {"role": "db"}, {"redis": 6379})
OTHER = Pod("other", "shop", {"role": "other"})
ELSEWHERE = Pod("elsewhere", "ops", {"role": "frontend"})
OUTSIDE = External("client", "203.0.113.7")
INSIDE_BLOCK = External("partner", "172.17.0.9")
EXCEPTED = External("partner-test", "172.17.1.9")


def _policy(spec: dict[str, Any], namespace: str = "shop") -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": namespace}, "spec": spec}


DB_FROM_FRONT = _policy(
    {
        "podSelector": {"matchLabels": {"role": "db"}},
        "ingress": [
            {
                "from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
                "ports": [{"port": 6379}],
            }
        ],
    }
)
DENY_EGRESS = _policy({"podSelector": {}, "policyTypes": ["Egress"]})
OPS = {"ops": {"team": "ops"}}

EVALUATOR_CASES: list[tuple[str, list[dict[str, Any]], Endpoint, Endpoint, int, str, bool]] = [
    ("no policy: open", [], FRONT, DB, 6379, "TCP", True),
    ("allowed peer and port", [DB_FROM_FRONT], FRONT, DB, 6379, "TCP", True),
    ("allowed peer, other port", [DB_FROM_FRONT], FRONT, DB, 80, "TCP", False),
    ("allowed peer and port, UDP", [DB_FROM_FRONT], FRONT, DB, 6379, "UDP", False),
    ("other peer", [DB_FROM_FRONT], OTHER, DB, 6379, "TCP", False),
    ("a podSelector alone is this namespace only", [DB_FROM_FRONT], ELSEWHERE, DB, 6379, "TCP",
     False),
    ("ingress isolation does not limit the pod's egress", [DB_FROM_FRONT], DB, FRONT, 8080,
     "TCP", True),
    ("egress policy without rules denies all egress", [DENY_EGRESS], FRONT, OUTSIDE, 443,
     "TCP", False),
    ("...but not ingress", [DENY_EGRESS], OUTSIDE, FRONT, 8080, "TCP", True),
    ("a policy in another namespace does not apply", [_policy({"podSelector": {}}, "ops")],
     OUTSIDE, FRONT, 8080, "TCP", True),
    (
        "namespace AND pod selector in one peer: both must match",
        [_policy({"podSelector": {"matchLabels": {"role": "db"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"team": "ops"}},
             "podSelector": {"matchLabels": {"role": "other"}}}]}]})],
        ELSEWHERE, DB, 6379, "TCP", False,
    ),
    (
        "namespace OR pod selector as two peers: either",
        [_policy({"podSelector": {"matchLabels": {"role": "db"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"team": "ops"}}},
            {"podSelector": {"matchLabels": {"role": "other"}}}]}]})],
        ELSEWHERE, DB, 6379, "TCP", True,
    ),
    (
        "namespace selector by the automatic name label",
        [_policy({"podSelector": {"matchLabels": {"role": "db"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}}]}]})],
        ELSEWHERE, DB, 6379, "TCP", True,
    ),
    (
        "ipBlock admits its addresses",
        [_policy({"podSelector": {}, "ingress": [{"from": [
            {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}}]}]})],
        INSIDE_BLOCK, FRONT, 8080, "TCP", True,
    ),
    (
        "ipBlock leaves out its exceptions",
        [_policy({"podSelector": {}, "ingress": [{"from": [
            {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}}]}]})],
        EXCEPTED, FRONT, 8080, "TCP", False,
    ),
    (
        "a named port is the destination's",
        [_policy({"podSelector": {"matchLabels": {"role": "db"}},
                  "ingress": [{"ports": [{"port": "redis"}]}]})],
        OTHER, DB, 6379, "TCP", True,
    ),
    (
        "a named port the destination lacks matches nothing",
        [_policy({"podSelector": {}, "ingress": [{"ports": [{"port": "redis"}]}]})],
        DB, FRONT, 8080, "TCP", False,
    ),
    (
        "endPort opens a range",
        [_policy({"podSelector": {}, "policyTypes": ["Egress"],
                  "egress": [{"ports": [{"port": 32000, "endPort": 32768}]}]})],
        FRONT, OUTSIDE, 32100, "TCP", True,
    ),
    (
        "egress rules without policyTypes make an egress policy",
        [_policy({"podSelector": {"matchLabels": {"role": "frontend"}},
                  "egress": [{"ports": [{"port": 443}]}]})],
        FRONT, OUTSIDE, 80, "TCP", False,
    ),
    (
        "matchExpressions In / NotIn / Exists / DoesNotExist",
        [_policy({"podSelector": {"matchExpressions": [
            {"key": "role", "operator": "In", "values": ["db", "cache"]},
            {"key": "tier", "operator": "NotIn", "values": ["test"]},
            {"key": "role", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"}]}})],
        FRONT, DB, 6379, "TCP", False,
    ),
    (
        "both ends must agree: egress allowed, ingress not",
        [DB_FROM_FRONT, _policy({"podSelector": {"matchLabels": {"role": "other"}},
                                 "egress": [{}], "policyTypes": ["Egress"]})],
        OTHER, DB, 6379, "TCP", False,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policies", "source", "destination", "port", "protocol", "expected"),
    [c[1:] for c in EVALUATOR_CASES],
    ids=[c[0] for c in EVALUATOR_CASES],
)
def test_evaluator(
    policies: list[dict[str, Any]],
    source: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str,
    expected: bool,
) -> None:
    """The evaluator follows the NetworkPolicy API's semantics, case by case."""
    cluster = Cluster(tuple(policies), OPS)
    assert cluster.allowed(source, destination, port, protocol) is expected


# ---------------------------------------------------------------- the exported policies

KUBE_DNS = Pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, {"dns": 53})
PROMETHEUS = Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
INTERNET = External("internet", "203.0.113.7")
DATABASE = External("database", "10.20.0.5")
PORTS = [
    (53, "UDP"),
    (53, "TCP"),
    (80, "TCP"),
    (443, "TCP"),
    (4222, "TCP"),
    (5432, "TCP"),
    (7777, "TCP"),
    (8000, "TCP"),
    (8080, "TCP"),
    (8222, "TCP"),
    (9901, "TCP"),
]
Path_ = tuple[str, str, int, str]


def _world(export: Export) -> tuple[Cluster, list[Pod], list[Endpoint]]:
    """The system's pods, and around them: DNS, a Prometheus, a stranger in the same
    namespace, an intruder elsewhere, a client on the internet, a managed database."""
    objects = kubernetes_documents(export)
    system = pods_of(objects)
    namespace = system[0].namespace
    stranger = Pod("stranger", namespace, {"app": "other"})
    intruder = Pod("intruder", "tenant-b", {"app.kubernetes.io/name": "rides"})
    policies = tuple(o for o in objects if o["kind"] == "NetworkPolicy")
    cluster = Cluster(policies, {"monitoring": {}, "tenant-b": {}, "kube-system": {}})
    others: list[Endpoint] = [KUBE_DNS, PROMETHEUS, stranger, intruder, INTERNET, DATABASE]
    return cluster, system, others


def _allowed(export: Export) -> set[Path_]:
    """Every (from, to, port, protocol) the policies allow with a pod of the system at
    one end at least."""
    cluster, system, others = _world(export)
    endpoints: list[Endpoint] = [*system, *others]
    out = set()
    for source, destination in itertools.product(endpoints, repeat=2):
        if source is destination or (source in others and destination in others):
            continue
        for port, protocol in PORTS:
            if cluster.allowed(source, destination, port, protocol):
                out.add((source.name, destination.name, port, protocol))
    return out


def _declared(plan: Plan, export: Export, *, scraped: bool) -> set[Path_]:
    """What the manifest declares, stated independently of the renderer."""
    _, system, others = _world(export)
    names = {p.name for p in system}
    outside = [o.name for o in others]
    out: set[Path_] = set()
    for pod in names:
        out |= {(pod, "kube-dns", 53, "UDP"), (pod, "kube-dns", 53, "TCP")}
    if plan.gateway is not None:
        out |= {(o, "corral-gateway", 8080, "TCP") for o in outside}
        out |= {("corral-gateway", c.name, 8000, "TCP") for c in plan.gateway.clusters}
    for name, service in plan.services.items():
        out |= {(name, callee, 8000, "TCP") for callee in service.calls or ()}
        if plan.events is not None and plan.events.topics_of(name):
            out.add((name, "corral-nats", 4222, "TCP"))
        if service.database.engine is DatabaseEngine.POSTGRES:
            # Its server's address is unknown (a Secret): port 5432 anywhere outside the
            # system (the system's own pods refuse it).
            out |= {(name, o, 5432, "TCP") for o in outside}
    if scraped:
        out |= {("prometheus", name, 8000, "TCP") for name in plan.services}
        if plan.gateway is not None:
            out.add(("prometheus", "corral-gateway", 9901, "TCP"))
        if "corral-nats" in names:
            out.add(("prometheus", "corral-nats", 7777, "TCP"))
    return out


def _targets(case: str) -> list[str]:
    targets: list[str] = json.loads((GOLDEN / case / "case.json").read_text())["targets"]
    return targets


KUBERNETES_CASES = [c for c in CASES if "kubernetes" in _targets(c)]


@pytest.mark.parametrize("case", KUBERNETES_CASES)
def test_exactly_the_declared_paths_are_open(case: str) -> None:
    """Over every pair of endpoints and every port that matters, the policies allow the
    declared paths and no other: every declared path is allowed, nothing undeclared."""
    export = render_case(case)
    plan = case_plan(case)
    allowed = _allowed(export)
    declared = _declared(plan, export, scraped="prometheus" in _targets(case))
    assert sorted(declared - allowed) == [], "declared but refused"
    assert sorted(allowed - declared) == [], "allowed but never declared"


@pytest.mark.parametrize("case", KUBERNETES_CASES)
def test_each_policy_selects_its_pods(case: str) -> None:
    """The default deny selects every pod of the system; each other policy exactly the
    pods of the workload it is named after (a policy selecting nothing protects nothing)."""
    cluster, system, others = _world(render_case(case))
    for policy in cluster.policies:
        selected = {p.name for p in system if matches(policy["spec"]["podSelector"], p.labels)}
        name = policy["metadata"]["name"]
        assert selected == ({p.name for p in system} if name == DEFAULT_DENY else {name})
        assert not any(
            isinstance(o, Pod)
            and matches(policy["spec"]["podSelector"], o.labels)
            and o.namespace == policy["metadata"]["namespace"]
            for o in others
        ), f"{name} selects a pod of another system"


def _ridehail() -> tuple[Plan, Export]:
    return case_plan("ridehail"), render_case("ridehail")


def test_ridehail_undeclared_calls_are_refused() -> None:
    """rides calls payments and tracking, payments calls fakepay: those are open. The
    reverse directions, calls nobody declared, an intruder wearing a service's labels in
    another namespace and a client on the internet reaching a service directly are not."""
    _, export = _ridehail()
    cluster, system, others = _world(export)
    pods = {p.name: p for p in [*system, *others] if isinstance(p, Pod)}
    assert cluster.allowed(pods["rides"], pods["payments"], 8000)
    assert cluster.allowed(pods["rides"], pods["tracking"], 8000)
    assert cluster.allowed(pods["payments"], pods["fakepay"], 8000)
    assert not cluster.allowed(pods["payments"], pods["rides"], 8000)
    assert not cluster.allowed(pods["rides"], pods["fakepay"], 8000)
    assert not cluster.allowed(pods["tracking"], pods["auth"], 8000)
    assert not cluster.allowed(pods["matching"], pods["rides"], 8000)
    assert not cluster.allowed(pods["intruder"], pods["rides"], 8000)
    assert not cluster.allowed(pods["stranger"], pods["rides"], 8000)
    assert not cluster.allowed(INTERNET, pods["rides"], 8000)
    assert cluster.allowed(INTERNET, pods["corral-gateway"], 8080)
    assert not cluster.allowed(pods["rides"], INTERNET, 443)
    assert cluster.allowed(pods["tracking"], pods["corral-nats"], 4222)  # it consumes topics
    assert not cluster.allowed(pods["auth"], pods["corral-nats"], 4222)  # it has none


def _plan(text: str) -> Plan:
    return resolve(parse(text, "/corral/demo/corral.yaml"), python=sys.executable)


MANIFEST = """name: demo
services:
  web: {app: w:svc, database: none, calls: [api]}
  worker: {app: k:svc, database: none}
  api: {app: a:svc, database: none}
gateway:
  routes:
    - {match: {prefix: /}, service: web}
"""


def test_a_call_opens_only_when_declared() -> None:
    """worker -> api is refused until worker lists api in calls:; web -> api is open; the
    gateway reaches only the routed web."""
    for declared in (False, True):
        text = MANIFEST.replace("worker: {app: k:svc, database: none}", (
            "worker: {app: k:svc, database: none, calls: [api]}" if declared
            else "worker: {app: k:svc, database: none}"
        ))  # fmt: skip
        export = render(_plan(text), [Target.KUBERNETES])
        cluster, system, _ = _world(export)
        pods = {p.name: p for p in system}
        assert cluster.allowed(pods["worker"], pods["api"], 8000) is declared
        assert cluster.allowed(pods["web"], pods["api"], 8000)
        assert cluster.allowed(pods["corral-gateway"], pods["web"], 8000)
        assert not cluster.allowed(pods["corral-gateway"], pods["api"], 8000)


def test_the_scrape_is_open_only_when_monitoring_is_exported() -> None:
    """Without the Prometheus target or --servicemonitor no Prometheus reaches a pod."""
    plan = _plan(MANIFEST)
    for targets, options, scraped in (
        ([Target.KUBERNETES], ExportOptions(), False),
        ([Target.KUBERNETES, Target.PROMETHEUS], ExportOptions(), True),
    ):
        export = render(plan, targets, options=options)
        assert _allowed(export) == _declared(plan, export, scraped=scraped)


def test_external_nats_is_reached_on_its_port() -> None:
    """With events.url the services with topics reach that port anywhere, and only they."""
    text = MANIFEST + (
        "events:\n  url: nats://bus.internal:4333\n"
        "  topics:\n    job.done: {producers: [worker], consumers: [api]}\n"
    )
    export = render(_plan(text), [Target.KUBERNETES])
    cluster, system, _ = _world(export)
    pods = {p.name: p for p in system}
    bus = External("bus", "10.30.0.4")
    assert cluster.allowed(pods["worker"], bus, 4333)
    assert cluster.allowed(pods["api"], bus, 4333)
    assert not cluster.allowed(pods["web"], bus, 4333)
    assert not cluster.allowed(pods["worker"], bus, 4222)
