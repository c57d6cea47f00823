"""Log capture and follow; the addon contract (components, environment, draining hook)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from runtime_helpers import SVC, make_plan, service, wait_until

from corral import contract
from corral.manifest import DatabaseEngine, RestartPolicy
from corral.plan import CheckKind, CheckPlan, DatabasePlan, Endpoints, RestartPlan, ServicePlan
from corral.runtime.addon import Addon, RuntimeContext
from corral.runtime.logs import LogLine, LogStore
from corral.runtime.orchestrator import Orchestrator
from corral.runtime.registry import InstanceRecord, InstanceState

pytestmark = pytest.mark.timeout(30)


async def test_logs_are_captured_per_instance_and_followed(system) -> None:
    """stdout and stderr lines land timestamped in <state_dir>/logs/<instance>.log as JSON
    lines; read filters by service and tail; follow yields new lines as they arrive."""
    orch, _ = system({"web": service(), "other": service(readiness=False)})
    began = time.time()
    await orch.up()
    await wait_until(lambda: len(orch.logs.read(["web"])) >= 2)
    lines = orch.logs.read(["web"])
    assert {(line.stream, line.line) for line in lines} >= {
        ("stdout", "hello from web-1 pid " + str(orch.registry.snapshot().get("web-1").pid)),
        ("stderr", "warming up web-1"),
    }
    assert all(line.service == "web" and began <= line.t <= time.time() for line in lines)
    stored = [
        json.loads(raw) for raw in (orch.state_dir / "logs" / "web-1.log").read_text().splitlines()
    ]
    assert set(stored[0]) == {"t", "service", "instance", "stream", "line"}
    assert len(orch.logs.read(tail=1)) == 1

    seen: list[str] = []

    async def follow() -> None:
        async for line in orch.logs.follow(["web"]):
            seen.append(line.line)

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0)
    os.kill(orch.registry.snapshot().get("web-1").pid, signal.SIGKILL)
    await wait_until(lambda: any(s.startswith("hello from web-1") for s in seen))
    follower.cancel()
    assert not any("other-1" in s for s in seen)


def broker_component(ctx: RuntimeContext, port: int, env: dict[str, str]) -> ServicePlan:
    """A system component running the fixture service on ``port``."""
    return ServicePlan(
        name="broker",
        argv=(sys.executable, SVC),
        workdir=ctx.plan.root,
        replicas=1,
        fixed_port=port,
        env=env,
        readiness=CheckPlan(CheckKind.TCP, period=0.2),
        liveness=None,
        startup=None,
        depends_on={},
        restart=RestartPlan(RestartPolicy.ALWAYS, 0.1, 1.0, 2.0, 10.0),
        stop_grace_period=2.0,
        database=DatabasePlan(DatabaseEngine.NONE, "broker"),
    )


class RecordingAddon(Addon):
    """Runs a component, adds a variable to services, records drained instances."""

    name = "recording"

    def __init__(self) -> None:
        self.drained: list[InstanceRecord] = []
        self.order: list[str] = []

    async def start(self, ctx: RuntimeContext) -> None:
        self.order.append("start")
        self.port = ctx.free_port()
        await ctx.run_component(broker_component(ctx, self.port, {}))

    def environment(self, service: ServicePlan) -> dict[str, str]:
        return {"BROKER_PORT": str(self.port)}

    async def before_instance_stop(self, record: InstanceRecord) -> None:
        assert record.state is InstanceState.DRAINING
        assert not record.serving
        self.drained.append(record)

    async def stop(self) -> None:
        self.order.append("stop")

    def status(self) -> dict[str, Any]:
        return {"broker_port": self.port}


async def test_addon_components_environment_and_draining(system) -> None:
    """An addon's component is supervised like an instance (component=True, ready before
    services start); its environment reaches services; instances are drained through it
    before SIGTERM; status merges its fields."""
    addon = RecordingAddon()
    orch, _ = system({"web": service(env={"SVC_PRINT_ENV": "BROKER_PORT"})}, addons=[addon])
    await orch.up()
    broker = orch.registry.snapshot().get("broker-1")
    assert broker.component
    assert broker.serving
    assert broker.port == addon.port
    assert f"BROKER_PORT={addon.port}" in {line.line for line in orch.logs.read(["web"])}
    assert orch.status().model_extra == {"broker_port": addon.port}
    assert orch.status().services["broker"].component is True
    await orch.down()
    assert [r.instance for r in addon.drained] == ["web-1", "broker-1"]
    assert addon.order == ["start", "stop"]


class _Rendezvous(Addon):
    """Starts only once the other addon's start has begun too (within five seconds)."""

    def __init__(self, name: str, mine: asyncio.Event, theirs: asyncio.Event) -> None:
        self.name = name
        self.mine = mine
        self.theirs = theirs

    async def start(self, ctx: RuntimeContext) -> None:
        self.mine.set()
        async with asyncio.timeout(5):
            await self.theirs.wait()


async def test_addons_start_together(system) -> None:
    """Every addon's start runs at once (NATS and Envoy side by side): two addons that
    each wait for the other's start to have begun both start."""
    one, two = asyncio.Event(), asyncio.Event()
    addons = [_Rendezvous("one", one, two), _Rendezvous("two", two, one)]
    orch, _ = system({"web": service()}, addons=addons)
    await orch.up()
    phases = {p.name for p in orch.status().startup}
    assert {"addon one", "addon two"} <= phases


class _Broken(Addon):
    name = "broken"

    async def start(self, ctx: RuntimeContext) -> None:
        raise LookupError("no such binary")


async def test_an_addon_that_cannot_start_fails_up_with_its_own_error(system) -> None:
    """An addon's error reaches the caller as itself (not wrapped in a group, so the
    CLI can show its message), the other addons' starts are cancelled and nothing of the
    system is left running."""
    orch, _ = system({"web": service()}, addons=[RecordingAddon(), _Broken()])
    with pytest.raises(LookupError, match="no such binary"):
        await orch.up()
    assert orch.state == "stopped"
    assert all(not r.serving for r in orch.registry.snapshot().instances)


def _write_log(path: Path, service: str, instance: str, times: list[float]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for n, t in enumerate(times):
            line = LogLine(t, service, instance, "stdout", f"{instance} line {n}")
            handle.write(json.dumps(line.to_json()) + "\n")


def test_tail_of_large_log_files_reads_from_the_end(tmp_path: Path, monkeypatch) -> None:
    """tail=5 over two large interleaved files returns the last 5 lines in time order,
    parsing only lines near the end of each file."""
    logs = tmp_path / "logs"
    logs.mkdir()
    count = 60_000
    _write_log(logs / "web-1.log", "web", "web-1", [1000.0 + 2 * n for n in range(count)])
    _write_log(logs / "api-1.log", "api", "api-1", [1001.0 + 2 * n for n in range(count)])
    with (logs / "web-1.log").open("a") as handle:
        handle.write('{"t": 1e12, "service": "web", "inst')  # a torn last line
    parsed = 0
    real = LogLine.from_json

    def counting(data: dict[str, Any]) -> LogLine:
        nonlocal parsed
        parsed += 1
        return real(data)

    monkeypatch.setattr(LogLine, "from_json", staticmethod(counting))
    store = LogStore(logs)
    tail = store.read(tail=5)
    assert [x.line for x in tail] == [
        "api-1 line 59997",
        "web-1 line 59998",
        "api-1 line 59998",
        "web-1 line 59999",
        "api-1 line 59999",
    ]
    assert [x.line for x in store.read(["web"], tail=2)] == ["web-1 line 59998", "web-1 line 59999"]
    assert [x.line for x in store.read(["api"], since=1000.0 + 2 * count - 4, tail=10)] == [
        "api-1 line 59998",
        "api-1 line 59999",
    ]
    assert parsed < 1000
    assert len(store.read(tail=0)) == 0
    assert len(store.read()) == 2 * count


def test_since_skips_files_not_written_since(tmp_path: Path) -> None:
    """Files whose mtime is older than since are not read; newer ones are filtered by t."""
    logs = tmp_path / "logs"
    logs.mkdir()
    _write_log(logs / "old-1.log", "old", "old-1", [5000.0])  # a line "newer" than its file
    os.utime(logs / "old-1.log", (100.0, 100.0))
    _write_log(logs / "web-1.log", "web", "web-1", [10.0, 20.0, 30.0])
    assert [x.line for x in LogStore(logs).read(since=200.0)] == []
    assert [x.line for x in LogStore(logs).read(["web"], since=20.0)] == [
        "web-1 line 1",
        "web-1 line 2",
    ]


async def test_stopped_instances_recent_lines_are_dropped(system) -> None:
    """Scaling down forgets the stopped instance's in-memory recent lines."""
    orch, _ = system({"web": service(replicas=2)})
    await orch.up()
    await wait_until(lambda: orch.logs.recent("web-2"))
    await orch.scale("web", 1)
    assert orch.logs.recent("web-2") == []
    assert orch.logs.recent("web-1")
    assert any(x.instance == "web-2" for x in orch.logs.read(["web"]))


PLANTED = "sk-live-planted-0123456789"


class SecretsAddon(Addon):
    """Hands services a secret the way the configuration addon does."""

    name = "secrets"

    def environment(self, service: ServicePlan) -> dict[str, str]:
        return {"API_KEY": PLANTED, contract.SECRET_VARIABLES: "API_KEY"}


async def test_an_instance_with_secrets_has_them_redacted_in_every_captured_line(
    system,
) -> None:
    """Whatever an instance prints (here its secret, the discovery token and its
    database password, on stdout at start) is stored, followed and kept redacted: the
    runtime knows the values it handed the instance."""
    orch, _ = system(
        {"web": service(env={"SVC_PRINT_ENV": "API_KEY,CORRAL_DISCOVERY_TOKEN,DATABASE_URL"})},
        addons=[SecretsAddon()],
        endpoints=Endpoints(
            discovery="registry+http://127.0.0.1:1", discovery_token="disc-0123456789"
        ),
    )
    await orch.up()
    lines = await wait_until(lambda: [x.line for x in orch.logs.read(["web"]) if "=" in x.line])
    assert "API_KEY=**********" in lines
    assert "CORRAL_DISCOVERY_TOKEN=**********" in lines
    stored = (orch.state_dir / "logs" / "web-1.log").read_text()
    assert PLANTED not in stored
    assert "disc-0123456789" not in stored
    assert all(PLANTED not in line for line in orch.logs.recent("web-1"))


async def test_components_get_an_allow_listed_environment(system, monkeypatch) -> None:
    """Envoy and nats-server need no credential: a component's environment is an
    allow-list (PATH, locale, HOME...) plus where to listen, never the discovery token,
    an inherited secret or the operator's OTLP headers."""
    monkeypatch.setenv("SHOP_STRIPE_KEY", PLANTED)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=collector-secret")
    shown = "CORRAL_DISCOVERY_TOKEN,SHOP_STRIPE_KEY,OTEL_EXPORTER_OTLP_HEADERS,PATH,PORT"

    class Component(RecordingAddon):
        async def start(self, ctx: RuntimeContext) -> None:
            self.port = ctx.free_port()
            await ctx.run_component(broker_component(ctx, self.port, {"SVC_PRINT_ENV": shown}))

    orch, _ = system(
        {"web": service()},
        addons=[Component()],
        endpoints=Endpoints(
            discovery="registry+http://127.0.0.1:1", discovery_token="disc-0123456789"
        ),
    )
    await orch.up()
    printed = await wait_until(
        lambda: {
            x.line.split("=", 1)[0]: x.line.split("=", 1)[1]
            for x in orch.logs.read(["broker"])
            if "=" in x.line
        }
    )
    assert printed["CORRAL_DISCOVERY_TOKEN"] == "None"
    assert printed["SHOP_STRIPE_KEY"] == "None"
    assert printed["OTEL_EXPORTER_OTLP_HEADERS"] == "None"
    assert printed["PATH"] == os.environ["PATH"]
    assert printed["PORT"] == str(orch.registry.snapshot().get("broker-1").port)


def _environment(tmp_path: Path, environ: dict[str, str], monkeypatch) -> dict[str, dict[str, str]]:
    """Each service's environment as the orchestrator would spawn it, with ``environ`` as
    the environment `corral up` runs in."""
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(key)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    manifest, plan = make_plan(
        tmp_path,
        {
            "pay": service(secrets={"STRIPE_KEY": {"env": "SHOP_STRIPE_LIVE"}}),
            "web": service(),
        },
    )
    orch = Orchestrator(plan, manifest_path=manifest.path)
    return {name: orch.environment(s, f"{name}-1", 1234) for name, s in plan.services.items()}


def test_the_variable_a_secret_is_read_from_is_inherited_by_no_instance(
    tmp_path: Path, monkeypatch
) -> None:
    """`STRIPE_KEY: {env: SHOP_STRIPE_LIVE}`: the control plane reads it and hands it to
    pay as STRIPE_KEY; no instance inherits SHOP_STRIPE_LIVE itself."""
    env = _environment(tmp_path, {"SHOP_STRIPE_LIVE": PLANTED}, monkeypatch)
    assert "SHOP_STRIPE_LIVE" not in env["web"]
    assert "SHOP_STRIPE_LIVE" not in env["pay"]


@pytest.mark.parametrize(
    ("environ", "inherited"),
    [
        ({"OTEL_EXPORTER_OTLP_HEADERS": "x-key=abc"}, False),
        ({"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=Bearer%20parent"}, False),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                "OTEL_EXPORTER_OTLP_HEADERS": "x-key=abc",
            },
            True,
        ),
    ],
)
def test_inherited_otlp_headers_go_only_with_the_users_own_collector(
    tmp_path: Path, monkeypatch, environ: dict[str, str], inherited: bool
) -> None:
    """OTLP headers in the shell are credentials for the operator's collector: instances
    inherit them only when that collector is where their spans go."""
    env = _environment(tmp_path, environ, monkeypatch)["web"]
    headers = {k: v for k, v in env.items() if k.startswith("OTEL_") and k.endswith("_HEADERS")}
    assert bool(headers) is inherited


async def test_a_run_marker_separates_runs_for_every_reader(tmp_path: Path) -> None:
    """Each `corral up` writes a marker (its time and run id) into the logs; read and
    follow show it whatever services they are filtered to, between the runs' lines."""
    store = LogStore(tmp_path / "logs")
    store.mark_run("run-one", system="shop", t=100.0)
    store.append(LogLine(101.0, "web", "web-1", "stdout", "first run"))
    store.mark_run("run-two", system="shop", t=200.0)
    store.append(LogLine(201.0, "web", "web-1", "stdout", "second run"))
    store.flush()  # read below as another process (`corral logs` after the run) would
    lines = [x.line for x in LogStore(tmp_path / "logs").read(["web"])]
    assert len(lines) == 4
    assert "run-one" in lines[0]
    assert lines[1] == "first run"
    assert "run-two" in lines[2]
    assert lines[3] == "second run"
    assert "run-two" in LogStore(tmp_path / "logs").read(["web"], tail=2)[0].line

    seen: list[str] = []

    async def follow() -> None:
        async for entry in store.follow(["web"]):
            seen.append(entry.line)

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0)
    store.mark_run("run-three", system="shop")
    await wait_until(lambda: seen)
    follower.cancel()
    assert "run-three" in seen[0]
