"""resolve(): manifest -> Plan, as table-driven cases, plus properties of the dependency order."""

from __future__ import annotations

import graphlib
import itertools
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.manifest import Condition, DatabaseEngine, ManifestError, RestartPolicy, parse
from corral.plan import CheckKind, CheckPlan, Plan, find_cycle, resolve, start_order

ROOT = Path("/srv/shop")
PYTHON = "/opt/python3.12/bin/python"


def plan(services: str, *, head: str = "") -> Plan:
    """The plan of system ``shop`` at /srv/shop with the given ``services:`` body."""
    text = f"name: shop\n{head}services:\n" + textwrap.indent(textwrap.dedent(services), "  ")
    return resolve(parse(text, ROOT / "corral.yaml"), python=PYTHON)


ORDER_CASES: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "independent services start by name",
        "zeta: {command: x}\nalpha: {command: x}\nmid: {command: x}\n",
        ("alpha", "mid", "zeta"),
    ),
    (
        "a chain starts from its end",
        "a: {command: x, depends_on: [b]}\nb: {command: x, depends_on: [c]}\nc: {command: x}\n",
        ("c", "b", "a"),
    ),
    (
        "a diamond starts its root, then both sides by name, then the join",
        "top: {command: x, depends_on: [right, left]}\n"
        "left: {command: x, depends_on: [base]}\n"
        "right: {command: x, depends_on: [base]}\n"
        "base: {command: x}\n",
        ("base", "left", "right", "top"),
    ),
    (
        "services start in waves: everything whose dependencies are up, by name",
        "a: {command: x, depends_on: {c: healthy}}\nb: {command: x}\nc: {command: x}\n"
        "d: {command: x}\n",
        ("b", "c", "d", "a"),
    ),
    (
        "a service waits for its deepest dependency",
        "web: {command: x, depends_on: [api, db]}\napi: {command: x, depends_on: [db]}\n"
        "db: {command: x}\n",
        ("db", "api", "web"),
    ),
]


@pytest.mark.parametrize(
    ("services", "order"),
    [(case[1], case[2]) for case in ORDER_CASES],
    ids=[case[0] for case in ORDER_CASES],
)
def test_start_order(services: str, order: tuple[str, ...]) -> None:
    """Dependencies start first; ties are broken by name, so the order is stable."""
    resolved = plan(services)
    assert resolved.start_order == order
    assert resolved.stop_order == tuple(reversed(order))
    assert tuple(resolved.services) == order


def test_dependents() -> None:
    """dependents() lists the services that depend directly on one, in start order."""
    resolved = plan(
        "web: {command: x, depends_on: [api]}\napi: {command: x, depends_on: [db]}\n"
        "admin: {command: x, depends_on: [db]}\ndb: {command: x}\n"
    )
    assert resolved.dependents("db") == ("admin", "api")
    assert resolved.dependents("web") == ()


def test_callers() -> None:
    """callers() lists the services that declare calling one, sorted by name."""
    resolved = plan(
        "web: {command: x, calls: [rides, auth]}\nrides: {command: x, calls: [payments]}\n"
        "admin: {command: x, calls: [payments]}\nauth: {command: x}\n"
        "payments: {command: x}\n"
    )
    assert resolved.services["web"].calls == ("auth", "rides")
    assert resolved.callers("payments") == ("admin", "rides")
    assert resolved.callers("web") == ()


SERVICE_CASES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "an app service runs corral.sdk.serve with the given interpreter",
        "app: shop.web:service",
        {
            "argv": (PYTHON, "-m", "corral.sdk.serve", "shop.web:service"),
            "app": "shop.web:service",
            "readiness": CheckPlan(CheckKind.HTTP, path="/readyz"),
            "liveness": CheckPlan(CheckKind.HTTP, path="/healthz", period=2.0),
            "startup": None,
        },
    ),
    (
        "an app service keeps the checks it states",
        "app: shop.web:service\nreadiness: {tcp: true}\nliveness: /alive",
        {
            "readiness": CheckPlan(CheckKind.TCP),
            "liveness": CheckPlan(CheckKind.HTTP, path="/alive"),
        },
    ),
    (
        "a command service gets no default checks",
        "command: python app.py --port 1",
        {
            "argv": ("python", "app.py", "--port", "1"),
            "app": None,
            "readiness": None,
            "liveness": None,
            "startup": None,
        },
    ),
    (
        "checks keep their kind and timings",
        "command: x\nreadiness: {http: /r, period: 250ms, timeout: 2s, failure_threshold: 5, "
        "initial_delay: 1s}\nstartup: {command: [pg_isready, -q]}",
        {
            "readiness": CheckPlan(
                CheckKind.HTTP,
                path="/r",
                period=0.25,
                timeout=2.0,
                failure_threshold=5,
                initial_delay=1.0,
            ),
            "startup": CheckPlan(CheckKind.COMMAND, argv=("pg_isready", "-q")),
        },
    ),
    ("workdir defaults to the manifest's folder", "command: x", {"workdir": ROOT}),
    (
        "a relative workdir resolves against the manifest's folder",
        "command: x\nworkdir: services/web",
        {"workdir": ROOT / "services" / "web"},
    ),
    ("an absolute workdir is kept", "command: x\nworkdir: /opt/web", {"workdir": Path("/opt/web")}),
    (
        "replicas, port, grace period, resources and labels carry over",
        "command: x\nport: 8080\nstop_grace_period: 30s\n"
        "resources: {cpu: 250m, memory: 1Gi}\nlabels: {tier: front, team: core}",
        {
            "replicas": 1,
            "fixed_port": 8080,
            "stop_grace_period": 30.0,
            "cpu": 0.25,
            "memory": 2**30,
            "labels": {"team": "core", "tier": "front"},
        },
    ),
    (
        "several replicas, no fixed port",
        "command: x\nreplicas: 3",
        {"replicas": 3, "fixed_port": None},
    ),
    (
        "the restart policy and backoff carry over",
        "command: x\nrestart: {policy: on-failure, backoff: {initial: 1s, max: 1m, "
        "multiplier: 3, reset_after: 5m}}",
        {
            "restart.policy": RestartPolicy.ON_FAILURE,
            "restart.backoff_initial": 1.0,
            "restart.backoff_max": 60.0,
            "restart.backoff_multiplier": 3.0,
            "restart.reset_after": 300.0,
        },
    ),
    (
        "default restart: always, 100 ms doubling up to 30 s",
        "command: x",
        {
            "restart.policy": RestartPolicy.ALWAYS,
            "restart.backoff_initial": 0.1,
            "restart.backoff_max": 30.0,
            "restart.backoff_multiplier": 2.0,
            "restart.reset_after": 10.0,
            "stop_grace_period": 10.0,
        },
    ),
    (
        "a service gets a SQLite database under .corral/data by default",
        "command: x",
        {
            "database.engine": DatabaseEngine.SQLITE,
            "database.name": "web_front",
            "database.sqlite_path": ROOT / ".corral" / "data" / "web_front.sqlite3",
        },
    ),
    (
        "a named SQLite database uses its name for the file",
        "command: x\ndatabase: {name: orders}",
        {"database.sqlite_path": ROOT / ".corral" / "data" / "orders.sqlite3"},
    ),
    (
        "a postgres database has no SQLite file",
        "command: x\ndatabase: postgres",
        {
            "database.engine": DatabaseEngine.POSTGRES,
            "database.name": "web_front",
            "database.sqlite_path": None,
        },
    ),
    (
        "database: none means no database at all",
        "command: x\ndatabase: none",
        {"database.engine": DatabaseEngine.NONE, "database.sqlite_path": None},
    ),
    (
        "a service that does not say whom it calls has calls None, not an empty list",
        "command: x",
        {"calls": None},
    ),
    (
        "calls: [] declares that the service calls nobody",
        "command: x\ncalls: []",
        {"calls": ()},
    ),
    (
        "env is kept as the manifest's own variables",
        "command: x\nenv: {B: '2', A: '1'}",
        {"env": {"A": "1", "B": "2"}},
    ),
]


def attribute(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(
    ("body", "expected"),
    [(case[1], case[2]) for case in SERVICE_CASES],
    ids=[case[0] for case in SERVICE_CASES],
)
def test_service_plan(body: str, expected: dict[str, Any]) -> None:
    """Each service's plan has the fields the manifest and Corral's defaults give it."""
    resolved = plan("web-front:\n" + textwrap.indent(body + "\n", "  "))
    service = resolved.services["web-front"]
    assert {field: attribute(service, field) for field in expected} == expected


def test_system_fields() -> None:
    """The plan names the system, its root, its state folder and the postgres server."""
    resolved = plan(
        "web: {command: x}\n", head="databases:\n  postgres:\n    url: postgresql://pg/postgres\n"
    )
    assert (resolved.system, resolved.root, resolved.state_dir) == (
        "shop",
        ROOT,
        ROOT / ".corral",
    )
    assert resolved.postgres_admin_url == "postgresql://pg/postgres"
    assert (resolved.gateway, resolved.events, resolved.resilience) == (None, None, None)


def test_depends_on_conditions() -> None:
    """depends_on keeps each dependency's condition; the list form means started."""
    resolved = plan(
        "web: {command: x, depends_on: {db: healthy, cache: started}}\n"
        "api: {command: x, depends_on: [db]}\ndb: {command: x}\ncache: {command: x}\n"
    )
    assert resolved.services["web"].depends_on == {
        "cache": Condition.STARTED,
        "db": Condition.HEALTHY,
    }
    assert resolved.services["api"].depends_on == {"db": Condition.STARTED}


def test_resolve_is_deterministic() -> None:
    """The same manifest gives an equal plan every time (no clock, no randomness, no I/O)."""
    services = "b: {app: m:a, depends_on: [a]}\na: {command: x, env: {Z: '1', A: '2'}}\n"
    assert plan(services) == plan(services)


@pytest.mark.parametrize(
    ("services", "message", "path"),
    [
        (
            "a: {command: x, depends_on: [b]}\nb: {command: x, depends_on: [a]}\n",
            "dependency cycle: a -> b -> a",
            ("services", "a", "depends_on", "b"),
        ),
        (
            "x: {command: x}\nc: {command: x, depends_on: [a]}\n"
            "b: {command: x, depends_on: [c]}\na: {command: x, depends_on: [b, x]}\n",
            "dependency cycle: a -> b -> c -> a",
            ("services", "a", "depends_on", "b"),
        ),
    ],
)
def test_cycle_is_one_located_diagnostic(
    services: str, message: str, path: tuple[str, ...]
) -> None:
    """A cycle is reported once, naming every service on it, at its first edge."""
    with pytest.raises(ManifestError) as caught:
        plan(services)
    [diagnostic] = caught.value.diagnostics
    assert (diagnostic.message, diagnostic.path) == (message, path)
    assert diagnostic.file == str(ROOT / "corral.yaml")


# --- properties of start_order and find_cycle -----------------------------------------


@st.composite
def acyclic_graphs(draw: st.DrawFn) -> dict[str, list[str]]:
    """A random DAG: names shuffled, edges only from a later to an earlier node."""
    count = draw(st.integers(min_value=1, max_value=9))
    names = draw(st.permutations([f"s{i}" for i in range(count)]))
    graph: dict[str, list[str]] = {}
    for index, name in enumerate(names):
        earlier = names[:index]
        graph[name] = sorted(draw(st.sets(st.sampled_from(earlier)))) if earlier else []
    return graph


def manifest_text(graph: dict[str, list[str]]) -> str:
    lines = ["name: prop", "services:"]
    for name, deps in graph.items():
        lines.append(f"  {name}: {{command: x, depends_on: [{', '.join(deps)}]}}")
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None)
@given(acyclic_graphs())
def test_start_order_puts_dependencies_first(graph: dict[str, list[str]]) -> None:
    """For any acyclic graph, every dependency starts before its dependent, each exactly once."""
    order = start_order(parse(manifest_text(graph), "corral.yaml"))
    assert sorted(order) == sorted(graph)
    position = {name: index for index, name in enumerate(order)}
    for name, deps in graph.items():
        assert all(position[dep] < position[name] for dep in deps)
    assert find_cycle(graph) is None


@st.composite
def any_graphs(draw: st.DrawFn) -> dict[str, list[str]]:
    """A random directed graph, self-loops and cycles allowed."""
    count = draw(st.integers(min_value=1, max_value=8))
    names = [f"s{i}" for i in range(count)]
    return {name: sorted(draw(st.sets(st.sampled_from(names), max_size=3))) for name in names}


@settings(max_examples=200, deadline=None)
@given(any_graphs())
def test_find_cycle_returns_a_real_cycle(graph: dict[str, list[str]]) -> None:
    """find_cycle returns a closed walk along real edges exactly when the graph has a cycle."""
    cycle = find_cycle(graph)
    try:
        graphlib.TopologicalSorter(graph).prepare()
        has_cycle = False
    except graphlib.CycleError:
        has_cycle = True
    assert (cycle is not None) == has_cycle
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        assert len(set(cycle[:-1])) == len(cycle) - 1
        assert all(b in graph[a] for a, b in itertools.pairwise(cycle))


@settings(max_examples=40, deadline=None)
@given(acyclic_graphs(), st.data())
def test_start_order_rejects_an_added_back_edge(
    graph: dict[str, list[str]], data: st.DataObject
) -> None:
    """Adding an edge from a service to one of its dependents makes a cycle that is named."""
    edges = [(name, dep) for name, deps in graph.items() for dep in deps]
    if not edges:
        return
    dependent, dependency = data.draw(st.sampled_from(edges))
    graph[dependency] = sorted({*graph[dependency], dependent})
    with pytest.raises(ManifestError) as caught:
        start_order(parse(manifest_text(graph), "corral.yaml"))
    [diagnostic] = caught.value.diagnostics
    named = diagnostic.message.removeprefix("dependency cycle: ").split(" -> ")
    assert named[0] == named[-1]
    assert all(b in graph[a] for a, b in itertools.pairwise(named))


def test_secrets_resolve_to_references_never_values() -> None:
    """A service's secrets become references (a file relative to the manifest made
    absolute), kept apart from its plain env, as a ConfigMap and a Secret would be."""
    from corral.plan import SecretRef, SecretSource

    web = plan(
        "web:\n  command: x\n  env: {LEVEL: info}\n"
        "  secrets: {API_KEY: {env: SHOP_API_KEY}, DB_PASSWORD: {file: secrets/db}}\n"
    ).services["web"]
    assert web.env == {"LEVEL": "info"}
    assert web.secrets == {
        "API_KEY": SecretRef(SecretSource.ENV, "SHOP_API_KEY"),
        "DB_PASSWORD": SecretRef(SecretSource.FILE, str(ROOT / "secrets" / "db")),
    }
    assert [str(ref) for ref in web.secrets.values()] == [
        "env:SHOP_API_KEY",
        f"file:{ROOT}/secrets/db",
    ]
