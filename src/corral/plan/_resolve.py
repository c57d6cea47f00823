"""Manifest -> Plan. Pure and deterministic: the same manifest gives the same plan."""

from __future__ import annotations

from pathlib import Path

from corral.contract import LIVENESS_PATH, READINESS_PATH
from corral.manifest import (
    AutoscaleSpec,
    CheckSpec,
    DatabaseEngine,
    Manifest,
    ManifestError,
    SecretRefSpec,
    ServiceSpec,
)
from corral.plan._events import resolve_events
from corral.plan._gateway import resolve_gateway
from corral.plan._model import (
    AutoscalePlan,
    CheckKind,
    CheckPlan,
    DatabasePlan,
    Plan,
    RestartPlan,
    SecretRef,
    SecretSource,
    ServicePlan,
)
from corral.plan._resilience import resolve_resilience

STATE_DIRNAME = ".corral"
SERVE_MODULE = "corral.sdk.serve"


def resolve(manifest: Manifest, *, python: str) -> Plan:
    """Resolve a validated manifest into a Plan.

    ``python`` is the interpreter that runs ``app:`` services (the caller passes
    ``sys.executable``; keeping it a parameter keeps this function pure).
    Raises :class:`ManifestError` for problems only visible across the whole system,
    such as a dependency cycle.
    """
    spec = manifest.spec
    root = manifest.root
    state_dir = root / STATE_DIRNAME
    order = start_order(manifest)
    services = {
        name: _service(name, spec.services[name], root=root, state_dir=state_dir, python=python)
        for name in order
    }
    postgres = spec.databases.postgres.url if spec.databases.postgres else None
    return Plan(
        system=spec.name,
        root=root,
        state_dir=state_dir,
        services=services,
        start_order=order,
        postgres_admin_url=postgres,
        gateway=resolve_gateway(manifest),
        events=resolve_events(manifest),
        resilience=resolve_resilience(manifest),
        runtime=spec.runtime or "process",
        telemetry_keep=spec.telemetry.keep if spec.telemetry else None,
        telemetry_max_bytes=spec.telemetry.max_size if spec.telemetry else None,
    )


def start_order(manifest: Manifest) -> tuple[str, ...]:
    """Topological order of services (dependencies first, ties by name).

    A cycle is a :class:`ManifestError` naming every service on it.
    """
    graph = {name: sorted(s.depends_on) for name, s in manifest.spec.services.items()}
    cycle = find_cycle(graph)
    if cycle:
        first, second = cycle[0], cycle[1]
        raise ManifestError(
            [
                manifest.diagnostic(
                    ("services", first, "depends_on", second),
                    "dependency cycle: " + " -> ".join(cycle),
                    "remove one of these dependencies; services on a cycle can never start",
                )
            ]
        )
    done: list[str] = []
    remaining = dict(graph)
    while remaining:
        ready = sorted(n for n, deps in remaining.items() if all(d in done for d in deps))
        # No cycle, and the manifest checks that every dependency exists: some service
        # is always ready. If not, a caller skipped validation; fail loudly, don't spin.
        assert ready, f"unresolvable dependencies: {sorted(remaining)}"
        done.extend(ready)
        for name in ready:
            del remaining[name]
    return tuple(done)


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """The first dependency cycle found (as ``[a, b, ..., a]``), visiting names in order."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep in graph and dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _service(
    name: str, spec: ServiceSpec, *, root: Path, state_dir: Path, python: str
) -> ServicePlan:
    if spec.app is not None:
        argv: tuple[str, ...] = (python, "-m", SERVE_MODULE, spec.app)
        default_readiness: CheckPlan | None = CheckPlan(CheckKind.HTTP, path=READINESS_PATH)
        default_liveness: CheckPlan | None = CheckPlan(
            CheckKind.HTTP, path=LIVENESS_PATH, period=2.0, failure_threshold=3
        )
    else:
        assert spec.command is not None  # the model guarantees one of app/command
        argv = spec.command
        default_readiness = default_liveness = None
    workdir = (root / spec.workdir) if spec.workdir else root
    engine = spec.database.engine or DatabaseEngine.SQLITE
    db_name = spec.database.name or name.replace("-", "_")
    database = DatabasePlan(
        engine=engine,
        name=db_name,
        sqlite_path=state_dir / "data" / f"{db_name}.sqlite3"
        if engine is DatabaseEngine.SQLITE
        else None,
    )
    backoff = spec.restart.backoff
    return ServicePlan(
        name=name,
        argv=argv,
        workdir=workdir,
        replicas=spec.replicas,
        fixed_port=spec.port,
        env=dict(sorted(spec.env.items())),
        readiness=_check(spec.readiness) if spec.readiness else default_readiness,
        liveness=_check(spec.liveness) if spec.liveness else default_liveness,
        startup=_check(spec.startup) if spec.startup else None,
        depends_on=dict(sorted(spec.depends_on.items())),
        restart=RestartPlan(
            policy=spec.restart.policy,
            backoff_initial=backoff.initial,
            backoff_max=backoff.max,
            backoff_multiplier=backoff.multiplier,
            reset_after=backoff.reset_after,
        ),
        stop_grace_period=spec.stop_grace_period,
        database=database,
        cpu=spec.resources.cpu,
        memory=spec.resources.memory,
        labels=dict(sorted(spec.labels.items())),
        app=spec.app,
        calls=None if spec.calls is None else tuple(sorted(set(spec.calls))),
        secrets={variable: _secret(ref, root) for variable, ref in sorted(spec.secrets.items())},
        watch=spec.watch,
        autoscale=_autoscale(spec.autoscale),
    )


def _autoscale(spec: AutoscaleSpec | None) -> AutoscalePlan | None:
    if spec is None:
        return None
    return AutoscalePlan(
        min=spec.min,
        max=spec.max,
        metric=spec.target.metric,
        target=spec.target.value,
        topic=spec.target.topic,
        up_stabilization=spec.stabilization.up,
        down_stabilization=spec.stabilization.down,
        up_cooldown=spec.cooldown.up,
        down_cooldown=spec.cooldown.down,
    )


def _secret(spec: SecretRefSpec, root: Path) -> SecretRef:
    if spec.env is not None:
        return SecretRef(SecretSource.ENV, spec.env)
    assert spec.file is not None  # the model guarantees one of env/file
    return SecretRef(SecretSource.FILE, str(root / spec.file))


def _check(spec: CheckSpec) -> CheckPlan:
    kind = CheckKind(spec.kind)
    return CheckPlan(
        kind=kind,
        path=spec.http,
        argv=spec.command or (),
        period=spec.period,
        timeout=spec.timeout,
        failure_threshold=spec.failure_threshold,
        initial_delay=spec.initial_delay,
    )
