"""The fork server: ``app:`` instances forked from a warm interpreter behave exactly as
fresh ``python -m corral.sdk.serve`` processes (own process group, own environment,
exit codes, restarts, reaping), and the runtime falls back to spawning when it is gone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from runtime_helpers import descendants, gone, wait_until

from corral.runtime._environ import BYTECODE_CACHE
from corral.runtime.addon import Addon, RuntimeContext
from corral.runtime.drivers import ProcessDriver
from corral.runtime.events import InstanceExited
from corral.runtime.orchestrator import Orchestrator
from corral.runtime.registry import InstanceState

pytestmark = pytest.mark.timeout(60)

DRIVER = str(Path(__file__).parent / "fixtures" / "driver.py")

APP = '''
"""A service that shows what its process sees."""
import os
import sys

from corral.sdk import Service

svc = Service("probe")
svc.log.info("imported")  # before the service starts: the SDK's import-time setup


@svc.get("/env/{name}")
async def env(name: str) -> dict[str, object]:
    return {"value": os.environ.get(name), "sdk_instance": svc.instance}


@svc.get("/process")
async def process() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "path0": sys.path[0],
        "version": VERSION,
        "stdin": os.readlink("/proc/self/fd/0"),
        "dont_write_bytecode": sys.dont_write_bytecode,
        "pycache_prefix": sys.pycache_prefix,
    }


@svc.get("/exit/{code}")
async def leave(code: int) -> dict[str, object]:
    os._exit(code)


VERSION = "one"
'''


def _manifest(root: Path, extra: str = "") -> Path:
    (root / "probe").mkdir(exist_ok=True)
    (root / "probe" / "__init__.py").write_text("")
    (root / "probe" / "app.py").write_text(APP)
    (root / "corral.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: forks
            services:
              probe:
                app: probe.app:svc
                database: none
                stop_grace_period: 2s
                readiness: {{http: /readyz}}
                env: {{ONLY_HERE: "instance-value"}}
            {extra}"""
        )
    )
    return root / "corral.yaml"


def _orchestrator(root: Path, orchestrators: list[Orchestrator], **kwargs: Any) -> Orchestrator:
    from corral.manifest import load
    from corral.plan import resolve

    path = _manifest(root)
    manifest = load(path)
    plan = resolve(manifest, python=sys.executable)
    orch = Orchestrator(plan, manifest_path=path, start_timeout=30.0, **kwargs)
    orchestrators.append(orch)
    return orch


def _url(orch: Orchestrator, path: str) -> str:
    record = orch.registry.snapshot().serving("probe")[0]
    return f"http://{record.host}:{record.port}{path}"


def _slot(orch: Orchestrator) -> Any:
    record = orch.registry.snapshot().get("probe-1")
    assert record is not None
    return record


def _forks(orch: Orchestrator) -> list[int]:
    driver = orch.driver
    assert isinstance(driver, ProcessDriver)
    return driver.fork_servers


async def _get(orch: Orchestrator, path: str) -> Any:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(_url(orch, path))
        response.raise_for_status()
        return response.json()


async def test_a_forked_instance_serves_with_its_own_env_group_and_path(
    tmp_path: Path, orchestrators: list[Orchestrator]
) -> None:
    orch = _orchestrator(tmp_path, orchestrators)
    await orch.up()
    servers = _forks(orch)
    assert len(servers) == 1, "the app: instance was forked from a fork server"
    seen = await _get(orch, "/process")
    pid = seen["pid"]
    assert psutil.Process(pid).ppid() == servers[0], "forked, not spawned"
    assert (seen["pgid"], seen["sid"]) == (pid, pid), "its own session and group"
    assert (seen["cwd"], seen["path0"]) == (str(tmp_path), str(tmp_path))
    assert seen["argv"][0].endswith("corral/sdk/serve.py")
    assert seen["argv"][1:] == ["probe.app:svc"]
    assert seen["stdin"] == "/dev/null"
    # Set only for the instance: the fork server never had it, the SDK sees it.
    env = await _get(orch, "/env/ONLY_HERE")
    assert env["value"] == "instance-value"
    assert env["sdk_instance"] == "probe-1"
    assert "ONLY_HERE" not in psutil.Process(servers[0]).environ()
    # Its output reaches the log store through the pipes the orchestrator reads; the
    # line logged while its module was imported carries the names of this instance,
    # which the fork server's environment never had.
    imported = await wait_until(
        lambda: [line.line for line in orch.logs.read(["probe"]) if '"imported"' in line.line]
    )
    assert json.loads(imported[0])["instance"] == "probe-1"
    assert json.loads(imported[0])["service"] == "probe"


async def test_exit_codes_and_signals_reach_the_slot(
    tmp_path: Path, orchestrators: list[Orchestrator]
) -> None:
    events: list[Any] = []
    orch = _orchestrator(tmp_path, orchestrators, on_event=events.append)
    await orch.up()
    with pytest.raises(httpx.HTTPError):
        await _get(orch, "/exit/7")
    await wait_until(lambda: any(isinstance(e, InstanceExited) for e in events))
    exited = next(e for e in events if isinstance(e, InstanceExited))
    assert (exited.code, exited.signal) == (7, None)
    # kill -9 of the child: a replacement is forked and becomes ready.
    await wait_until(lambda: _slot(orch).serving, timeout=20)
    old = (await _get(orch, "/process"))["pid"]
    os.kill(old, signal.SIGKILL)
    await wait_until(lambda: len([e for e in events if isinstance(e, InstanceExited)]) == 2)
    killed = [e for e in events if isinstance(e, InstanceExited)][-1]
    assert (killed.code, killed.signal) == (None, signal.SIGKILL)
    await wait_until(lambda: (r := _slot(orch)).serving and r.pid != old, timeout=20)
    new = await _get(orch, "/process")
    assert psutil.Process(new["pid"]).ppid() in _forks(orch)


async def test_a_killed_fork_server_falls_back_to_spawn_and_recovers(
    tmp_path: Path, orchestrators: list[Orchestrator]
) -> None:
    orch = _orchestrator(tmp_path, orchestrators)
    await orch.up()
    (server,) = _forks(orch)
    first = (await _get(orch, "/process"))["pid"]
    os.kill(server, signal.SIGKILL)
    # The child dies with its fork server; the slot replaces it by a plain spawn.
    await wait_until(lambda: gone(first))
    await wait_until(lambda: (r := _slot(orch)).serving and r.pid != first, timeout=20)
    second = (await _get(orch, "/process"))["pid"]
    assert psutil.Process(second).ppid() == os.getpid(), "spawned while no fork server runs"
    # A new fork server is started, and the next replacement is forked from it.
    (restarted,) = await wait_until(lambda: _forks(orch), timeout=30)
    assert restarted != server
    os.kill(second, signal.SIGKILL)
    await wait_until(
        lambda: (r := _slot(orch)).serving and r.pid != second,
        timeout=20,
    )
    third = (await _get(orch, "/process"))["pid"]
    assert psutil.Process(third).ppid() == restarted


async def test_reload_runs_changed_code(tmp_path: Path, orchestrators: list[Orchestrator]) -> None:
    orch = _orchestrator(tmp_path, orchestrators)
    await orch.up()
    assert (await _get(orch, "/process"))["version"] == "one"
    app = tmp_path / "probe" / "app.py"
    app.write_text(app.read_text().replace('VERSION = "one"', 'VERSION = "two"'))
    await orch.reload("probe")
    assert (await _get(orch, "/process"))["version"] == "two"
    assert len(_forks(orch)) == 1


async def test_bytecode_settings_are_the_instances(
    tmp_path: Path, orchestrators: list[Orchestrator], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PYTHONDONTWRITEBYTECODE becomes a cache under .corral (test_bytecode.py) for a
    forked instance as for a spawned one: the fork server starts with the instance's
    start-up variables."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    orch = _orchestrator(tmp_path, orchestrators)
    await orch.up()
    assert len(_forks(orch)) == 1
    seen = await _get(orch, "/process")
    assert seen["dont_write_bytecode"] is False
    assert seen["pycache_prefix"] == str(orch.state_dir / BYTECODE_CACHE)
    assert any((orch.state_dir / BYTECODE_CACHE).rglob("app*.pyc"))


async def test_switched_off_spawns(
    tmp_path: Path, orchestrators: list[Orchestrator], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_FORK_SERVER", "0")
    orch = _orchestrator(tmp_path, orchestrators)
    await orch.up()
    assert _forks(orch) == []
    pid = (await _get(orch, "/process"))["pid"]
    assert psutil.Process(pid).ppid() == os.getpid()


async def test_down_leaves_no_process(tmp_path: Path, orchestrators: list[Orchestrator]) -> None:
    orch = _orchestrator(tmp_path, orchestrators)
    await orch.up()
    (server,) = _forks(orch)
    pid = (await _get(orch, "/process"))["pid"]
    await orch.down()
    await wait_until(lambda: gone(server) and gone(pid))
    record = orch.registry.snapshot().get("probe-1")
    assert record is None or record.state is not InstanceState.RUNNING


class _SeesForkServers(Addon):
    """Records how many fork servers the driver had begun when the addons started."""

    name = "sees-fork-servers"

    def __init__(self) -> None:
        self.servers_at_start: int | None = None

    async def start(self, ctx: RuntimeContext) -> None:
        assert isinstance(ctx, Orchestrator)
        driver = ctx.driver
        assert isinstance(driver, ProcessDriver)
        self.servers_at_start = len(driver._servers)


async def test_the_fork_server_starts_before_the_addons_and_serves_the_instances(
    tmp_path: Path, orchestrators: list[Orchestrator]
) -> None:
    """``up`` starts the fork server before the addons (its imports overlap theirs), and
    that very server (keyed without the addons' variables) forks the instance."""
    seer = _SeesForkServers()
    orch = _orchestrator(tmp_path, orchestrators, addons=[seer])
    await orch.up()
    assert seer.servers_at_start == 1, "begun before the addons started"
    servers = _forks(orch)
    assert len(servers) == 1, "no second server: the warmed one had the instance's key"
    seen = await _get(orch, "/process")
    assert psutil.Process(seen["pid"]).ppid() == servers[0]


async def test_a_fork_server_begun_before_the_orchestrator_is_adopted(
    tmp_path: Path, orchestrators: list[Orchestrator]
) -> None:
    """A fork server begun before the orchestrator existed (as `corral up` does, before
    importing the control plane) is the one its instances fork from, and the timeline
    shows it began before ``up``; the driver closes it with the rest."""
    from corral.manifest import load
    from corral.plan import resolve
    from corral.runtime.drivers import EarlyForkServers
    from corral.runtime.orchestrator import startup_environment

    path = _manifest(tmp_path)
    plan = resolve(load(path), python=sys.executable)
    early = EarlyForkServers()
    await early.start((s, startup_environment(plan, s)) for s in plan.services.values())
    [warming] = early.warming.values()
    orch = Orchestrator(plan, manifest_path=path, start_timeout=30.0, fork_servers=early)
    orchestrators.append(orch)
    await orch.up()
    server = (await warming.task).pid
    assert _forks(orch) == [server], "adopted, not a second one"
    seen = await _get(orch, "/process")
    assert psutil.Process(seen["pid"]).ppid() == server
    phases = {p.name: p for p in orch.status().startup}
    assert phases["fork server 1"].start < phases["up"].start
    await orch.down()
    await wait_until(lambda: gone(server), timeout=10)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, []),
        ({"CORRAL_CONFIG_URL": "http://x"}, ["aiohttp", "corral.sdk._sse"]),
        ({"NATS_URL": "nats://x"}, ["nats", "nats.js", "corral.sdk.events"]),
        ({"CORRAL_EVENTS": "{}"}, ["nats", "nats.js", "corral.sdk.events"]),
        (
            {"DATABASE_URL": "sqlite+aiosqlite:///x.db"},
            [
                "sqlalchemy",
                "sqlalchemy.ext.asyncio",
                "sqlalchemy.orm",
                "sqlalchemy.dialects.postgresql",
                "sqlalchemy.dialects.sqlite.aiosqlite",
                "aiosqlite",
            ],
        ),
        (
            {"DATABASE_URL": "postgresql+asyncpg://u@h/d"},
            [
                "sqlalchemy",
                "sqlalchemy.ext.asyncio",
                "sqlalchemy.orm",
                "sqlalchemy.dialects.postgresql",
                "sqlalchemy.dialects.postgresql.asyncpg",
                "asyncpg",
            ],
        ),
        (
            {"CORRAL_IDENTITY": "{}", "CORRAL_CONFIG_URL": "http://x"},
            ["aiohttp", "corral.sdk._sse", "jwt", "corral.sdk.identity._setup"],
        ),
    ],
)
def test_what_an_instance_will_import_is_read_from_its_environment(
    env: dict[str, str], expected: list[str]
) -> None:
    """The modules the fork server loads before forking an instance follow what its
    environment says the SDK will use, once each."""
    from corral.runtime._forkserver_main import wanted

    assert wanted(env) == expected


def test_what_may_be_preloaded_before_a_fork_is_audited() -> None:
    """Everything :func:`wanted` can name is in PRELOAD_IF_INSTALLED (what the import
    audit covers), and it is keyed by the contract's own variable names."""
    from corral import contract
    from corral.runtime import _forkserver_main as server

    names = {name for _, modules in server._WANTED_WITH for name in modules}
    names |= {name for _, modules in server._DATABASE_DRIVERS for name in modules}
    assert names <= set(server.PRELOAD_IF_INSTALLED)
    variables = {variable for variable, _ in server._WANTED_WITH}
    assert variables <= set(contract.ALL_VARIABLES) | {contract.OTEL_ENDPOINT}


def test_a_fork_request_first_loads_what_the_instance_will_use() -> None:
    """Before forking, the server imports the modules the instance's environment names
    and no others; they are then off the idle list."""
    import socket as sockets

    from corral.runtime import _forkserver_main as server

    ours, theirs = sockets.socketpair(sockets.AF_UNIX, sockets.SOCK_SEQPACKET)
    try:
        srv = server.Server(theirs)
        srv.preload_for({"CORRAL_EVENTS": "{}"})
        assert not {"nats", "nats.js", "corral.sdk.events"} & set(srv.later)
        assert "sqlalchemy" in srv.later, "not named by this environment: left for later"
        srv.selector.close()
        os.close(srv.wake_r)
        os.close(srv.wake_w)
    finally:
        ours.close()
        theirs.close()


def test_startup_key_is_the_interpreter_and_its_start_variables() -> None:
    from corral.runtime._forkserver import forkable, startup_key

    env = {"PORT": "1", "PYTHONPATH": "/x", "LC_ALL": "C", "HOME": "/h", "CORRAL_SERVICE": "a"}
    assert startup_key("/py", env) == (
        "/py",
        (("HOME", "/h"), ("LC_ALL", "C"), ("PYTHONPATH", "/x")),
    )
    assert forkable(["/py", "-m", "corral.sdk.serve", "a:svc"])
    assert not forkable(["/py", "-X", "dev", "-m", "corral.sdk.serve", "a:svc"])
    assert not forkable(["/py", "-m", "http.server"])


async def test_sigkilled_orchestrator_leaves_no_fork_server_nor_child(tmp_path: Path) -> None:
    """The orchestrator's SIGKILL takes the fork server (PR_SET_PDEATHSIG) and every
    forked instance (PR_SET_PDEATHSIG towards the fork server, and the reaper) down."""
    path = _manifest(tmp_path)
    path.write_text(path.read_text().replace("database: none", "database: none\n    replicas: 2"))
    driver = subprocess.Popen(
        [sys.executable, DRIVER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert driver.stdout is not None
        status = json.loads(driver.stdout.readline())
        pids = [i["pid"] for i in status["instances"]]
        assert len(pids) == 2
        servers = {psutil.Process(pid).ppid() for pid in pids}
        assert len(servers) == 1, "forked from one fork server"
        assert driver.pid not in servers
        family = await wait_until(lambda: len(d := descendants(driver.pid)) >= 4 and d)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        await wait_until(lambda: all(gone(pid) for pid in family), timeout=10)
    finally:
        driver.kill()


AUDIT = """
import importlib, json, os, runpy, sys, traceback
from collections.abc import MutableMapping

reads = {}


class Recording(MutableMapping):
    def __init__(self, inner):
        self.inner = inner

    def _note(self, key):
        for frame in reversed(traceback.extract_stack()[:-2]):
            if not frame.filename.startswith("<frozen"):
                reads.setdefault(key, set()).add(frame.filename)
                return

    def __getitem__(self, key):
        self._note(key)
        return self.inner[key]

    def __setitem__(self, key, value):
        self.inner[key] = value

    def __delitem__(self, key):
        del self.inner[key]

    def __iter__(self):
        self._note("*every variable*")
        return iter(self.inner)

    def __len__(self):
        return len(self.inner)

    def __contains__(self, key):
        self._note(key)
        return key in self.inner


os.environ = Recording(os.environ)
server = runpy.run_path(sys.argv[1])
for name in server["PRELOAD"] + server["PRELOAD_IF_INSTALLED"]:
    importlib.import_module(name)
print(json.dumps({key: sorted(files) for key, files in reads.items()}))
"""

REFRESHED_IN_CHILD = ("wsgiref/handlers.py", "corral/sdk/_logging.py", "corral/sdk/_settings.py")
"""Modules whose import-time copies of the environment the child reads again."""


def test_what_the_fork_server_imports_reads_from_the_environment_is_keyed_or_refreshed() -> None:
    """Every variable a pre-imported module reads at import either keys the fork server
    (so it has the instance's value) or is read again in the child."""
    from corral.runtime import _forkserver, _forkserver_main
    from corral.runtime._forkserver import is_startup_variable

    done = subprocess.run(
        [sys.executable, "-c", AUDIT, _forkserver_main.__file__],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "CORRAL_SERVICE": "x", "OTEL_SERVICE_NAME": "x"},
    )
    reads: dict[str, list[str]] = json.loads(done.stdout.splitlines()[-1])
    frozen = {
        key: files
        for key, files in reads.items()
        if not is_startup_variable(key) and not all(f.endswith(REFRESHED_IN_CHILD) for f in files)
    }
    assert frozen == {}, f"read at import, neither keyed nor refreshed: {frozen}"
    assert _forkserver.SERVE_MODULE == _forkserver_main.SERVE_MODULE


async def test_an_interpreter_without_corral_spawns_and_is_given_up(tmp_path: Path) -> None:
    """A fork server that cannot start (its interpreter lacks Corral) means a plain spawn,
    which fails as it always did; after three failed starts the driver stops trying."""
    from corral.manifest import load
    from corral.plan import resolve
    from corral.runtime._process import Reaper

    base = Path(sys.base_prefix) / "bin" / "python3"
    plan = resolve(load(_manifest(tmp_path)), python=str(base))
    service = plan.services["probe"]
    reaper = Reaper()
    await reaper.start()
    driver = ProcessDriver(reaper, fork=True)
    try:
        for _ in range(40):
            program = await driver.start(service, "probe-1", {"PATH": os.environ["PATH"]})
            assert isinstance(program._proc, asyncio.subprocess.Process), "spawned"
            assert await program.wait() != 0  # no corral.sdk there, as before
            await program.release()
            if driver._given_up:
                break
        assert driver.fork_servers == []
        assert len(driver._given_up) == 1, "three failed starts: no more tries"
    finally:
        await driver.close()
        await reaper.stop()
