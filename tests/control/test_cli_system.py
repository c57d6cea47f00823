"""`corral up/status/logs/scale/restart/down` as a user runs them: real CLI processes,
a real orchestrator, real services (the runtime tests' stdlib fixture service)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from testkit import corral, wait_for

FIXTURE = Path(__file__).resolve().parents[1] / "runtime" / "fixtures" / "svc.py"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@contextlib.contextmanager
def detached(folder: Path, manifest_text: str) -> Iterator[Path]:
    """``corral up -d`` of ``manifest_text`` in ``folder``; ``corral down`` afterwards."""
    (folder / "corral.yaml").write_text(manifest_text)
    up = corral("up", "-d", cwd=folder)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield folder
    finally:
        corral("down", cwd=folder, timeout=60)


def manifest(tmp_path: Path, *, api_env: str = "") -> Path:
    path = tmp_path / "corral.yaml"
    path.write_text(
        f"""name: demo
services:
  api:
    command: [{sys.executable}, {FIXTURE}]
    readiness: /readyz
    stop_grace_period: 5s
    env: {{{api_env}}}
  web:
    command: [{sys.executable}, {FIXTURE}]
    readiness: /readyz
    depends_on: {{api: healthy}}
    stop_grace_period: 5s
    env: {{GREETING: hello}}
"""
    )
    return path


def status(cwd: Path) -> dict[str, Any]:
    result = corral("status", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture(autouse=True)
def own_systems_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's `corral ls` sees only the systems it started."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


@pytest.fixture
def system_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder with a manifest; whatever runs there is taken down afterwards."""
    manifest(tmp_path)
    yield tmp_path
    corral("down", cwd=tmp_path, timeout=60)


def test_detached_up_status_scale_logs_down(system_dir: Path) -> None:
    """The whole operator loop through the CLI leaves no process behind."""
    up = corral("up", "-d", cwd=system_dir)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "ready 1/1" in up.stdout
    # The hints work from any folder: they name the manifest by its real path.
    hints = " ".join(up.stdout.split())
    assert f"logs: corral logs {system_dir} -F; stop: corral down {system_dir}" in hints

    data = status(system_dir)
    assert data["system"] == "demo"
    assert data["api_url"].startswith("http://127.0.0.1:")
    assert "gateway_url" in data
    records = [i for i in data["instances"] if not i["component"]]
    assert {r["instance"] for r in records} == {"api-1", "web-1"}
    for record in records:
        for field in ("service", "instance", "pid", "port", "state", "ready", "restarts", "uptime"):
            assert field in record
        assert record["state"] == "running"
        assert record["ready"] is True

    table = corral("status", cwd=system_dir)
    assert "web-1" in table.stdout
    assert "running" in table.stdout
    assert f"config   version 1  (corral config show {system_dir})" in table.stdout

    scaled = corral("scale", "web=3", cwd=system_dir)
    assert scaled.returncode == 0, scaled.stderr
    web = [i for i in status(system_dir)["instances"] if i["service"] == "web"]
    assert len(web) == 3
    assert all(i["ready"] for i in web)
    # Progress while it ran, then the API's own account of the change.
    assert re.search(r"✔ web-3 +ready", scaled.stdout), scaled.stdout
    assert "✔ web scaled to 3 (3/3 ready)" in scaled.stdout

    logs = corral("logs", "web", "--tail", "50", cwd=system_dir)
    assert "hello from web-3" in logs.stdout
    assert "api-1" not in logs.stdout

    rolled = corral("restart", "web", "--rolling", cwd=system_dir)
    assert rolled.returncode == 0, rolled.stderr
    for replaced, replacement in (("web-1", "web-4"), ("web-2", "web-5"), ("web-3", "web-6")):
        assert re.search(rf"✔ {replacement} +ready", rolled.stdout), rolled.stdout
        assert re.search(rf"- {replaced} +stopped", rolled.stdout), rolled.stdout
    assert "✔ web restarted (rolling) (3/3 ready)" in rolled.stdout

    pids = [i["pid"] for i in status(system_dir)["instances"]]
    orchestrator_pid = status(system_dir)["pid"]
    down = corral("down", cwd=system_dir)
    assert down.returncode == 0, down.stderr
    for instance in ("api-1", "web-4", "web-5", "web-6"):
        assert re.search(rf"- {instance} +stopped", down.stdout), down.stdout
    wait_for(lambda: not alive([*pids, orchestrator_pid]), what="every process to exit")
    assert not (system_dir / ".corral" / "api.json").exists()


def test_ctrl_c_stops_everything_in_reverse_dependency_order(system_dir: Path) -> None:
    """SIGINT to a foreground `corral up` stops web before api, then exits 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "corral", "up", "--no-logs"],
        cwd=system_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: (
                (system_dir / ".corral" / "api.json").exists()
                and all(i["ready"] for i in status(system_dir)["instances"])
                and len(status(system_dir)["instances"]) == 2
            ),
            what="the system to be ready",
        )
        pids = [i["pid"] for i in status(system_dir)["instances"]]
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    wait_for(lambda: not alive(pids), what="services to exit")

    def bye_time(instance: str) -> float:
        for line in (system_dir / ".corral" / "logs" / f"{instance}.log").read_text().splitlines():
            entry = json.loads(line)
            if entry["line"].startswith("bye from"):
                return float(entry["t"])
        raise AssertionError(f"{instance} never said bye")

    assert bye_time("web-1") <= bye_time("api-1")


def test_a_service_that_cannot_start_is_explained(tmp_path: Path) -> None:
    """A crashing service makes `up` exit 1 with its last log lines and no traceback."""
    manifest(tmp_path, api_env="SVC_CRASH_AFTER: '0', SVC_EXIT_CODE: '3'")
    result = corral("up", "--no-logs", cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "demo could not start" in result.stderr
    assert "api-1" in result.stderr
    assert "hello from api-1" in result.stderr  # the instance's own output, shown
    assert not (tmp_path / ".corral" / "api.json").exists()


def test_logs_mark_where_each_run_began(system_dir: Path) -> None:
    """Logs outlive a run and the next one appends: `corral logs` (filtered to a
    service, too) shows a marker with the time and run id where each run began."""
    assert corral("up", "-d", cwd=system_dir).returncode == 0
    assert corral("down", cwd=system_dir).returncode == 0
    assert corral("up", "-d", cwd=system_dir).returncode == 0
    shown = corral("logs", "api", cwd=system_dir)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    markers = [n for n, line in enumerate(lines) if "corral up: run" in line]
    hellos = [n for n, line in enumerate(lines) if "hello from api-1" in line]
    assert len(markers) == 2, shown.stdout
    assert len(hellos) == 2, shown.stdout
    assert markers[0] < hellos[0] < markers[1] < hellos[1]


def test_detached_run_files_are_private_and_hold_no_login_link(system_dir: Path) -> None:
    """`up -d` prints a one-time dashboard login link to the terminal only: no file
    under .corral holds its token, and the daemon's own log and the instances' logs
    are the operator's alone (0600 in a 0700 directory)."""
    up = corral("up", "-d", cwd=system_dir)
    assert up.returncode == 0, up.stdout + up.stderr
    token = up.stdout.split("#login=", 1)[1].split()[0]
    state = system_dir / ".corral"
    assert state.stat().st_mode & 0o777 == 0o700
    for path in [state / "corral.log", *sorted((state / "logs").glob("*.log"))]:
        assert path.stat().st_mode & 0o777 == 0o600, path
    for path in (p for p in state.rglob("*") if p.is_file() and not p.is_socket()):
        assert token not in path.read_text(errors="replace"), path


def test_second_up_is_refused_while_running(system_dir: Path) -> None:
    """Starting a system twice explains that it already runs."""
    assert corral("up", "-d", cwd=system_dir).returncode == 0
    again = corral("up", "-d", cwd=system_dir)
    assert again.returncode == 1
    assert "already running" in again.stderr


def test_unknown_service_is_a_clear_error(system_dir: Path) -> None:
    """Scaling a service the manifest lacks is refused by name."""
    assert corral("up", "-d", cwd=system_dir).returncode == 0
    result = corral("scale", "nope=2", cwd=system_dir)
    assert result.returncode == 1
    assert "no service named 'nope'" in result.stderr


def test_gateway_routes_and_metrics_but_no_admin_port(tmp_path: Path) -> None:
    """With a gateway: `corral gateway routes` reads Envoy's live table through the admin
    socket (mode 0600); the metrics URL serves Prometheus text; nothing else of the admin
    API is reachable over TCP."""
    path = manifest(tmp_path)
    path.write_text(
        path.read_text()
        + """gateway:
  routes:
    - match: {prefix: /api}
      service: api
      rewrite: /
      auth: public
"""
    )
    try:
        up = corral("up", "-d", cwd=tmp_path)
        assert up.returncode == 0, up.stdout + up.stderr
        data = status(tmp_path)
        socket = Path(data["gateway_admin_socket"])
        assert socket.is_socket()
        assert socket.stat().st_mode & 0o777 == 0o600

        routes = corral("gateway", "routes", "--json", cwd=tmp_path)
        assert routes.returncode == 0, routes.stderr
        rows = json.loads(routes.stdout)
        forwarded = [(r["match"], r["service"]) for r in rows if r["service"]]
        assert forwarded[:1] == [("prefix /api", "api")]
        # before it, the 404 that keeps /api's internal endpoints (/api/metrics, ...) off
        assert rows[0]["name"].endswith("/internal")
        assert rows[0]["direct_response"] == 404

        metrics = httpx.get(data["gateway_metrics_url"], timeout=5)
        assert metrics.status_code == 200
        assert "envoy_cluster_upstream_cx_total" in metrics.text
        stats_base = data["gateway_metrics_url"].removesuffix("/stats/prometheus")
        for method, admin_path in [("POST", "/quitquitquit"), ("GET", "/config_dump")]:
            assert httpx.request(method, stats_base + admin_path, timeout=5).status_code == 404
        assert httpx.get(data["gateway_url"] + "/api/", timeout=5).status_code == 200
    finally:
        corral("down", cwd=tmp_path, timeout=60)


def test_gateway_routes_without_a_gateway_is_a_clear_error(system_dir: Path) -> None:
    assert corral("up", "-d", cwd=system_dir).returncode == 0
    result = corral("gateway", "routes", cwd=system_dir)
    assert result.returncode == 1
    assert "has no gateway" in result.stderr
    assert "Traceback" not in result.stderr


def test_stop_start_restart_and_ls_from_anywhere(system_dir: Path, tmp_path: Path) -> None:
    """From another folder: `ls` lists the system, `status NAME` finds it by name, a
    stopped service refuses `restart` (it reported success before, while nothing ran)
    and `start` brings back as many instances as it had; the API documents its answers."""
    assert corral("up", "-d", cwd=system_dir).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert corral("scale", str(system_dir), "web=2", cwd=elsewhere).returncode == 0

    listed = corral("ls", "--json", cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["system"], row["manifest"]) == ("demo", str(system_dir / "corral.yaml"))
    assert (row["state"], row["ready"], row["total"]) == ("running", 3, 3)
    assert row["dashboard_url"].startswith("http://127.0.0.1:")
    assert row["uptime"] > 0
    assert "demo" in corral("ls", cwd=elsewhere).stdout

    by_name = corral("status", "demo", "--json", cwd=elsewhere)
    assert by_name.returncode == 0, by_name.stderr
    assert json.loads(by_name.stdout)["state_dir"] == str(system_dir / ".corral")

    stopped = corral("stop", str(system_dir), "web", cwd=elsewhere)
    assert stopped.returncode == 0, stopped.stderr
    assert re.search(r"- web-2 +stopped", stopped.stdout), stopped.stdout
    restart = corral("restart", str(system_dir), "web", cwd=elsewhere)
    assert restart.returncode == 1
    assert "web is stopped: there is nothing to restart" in restart.stderr
    started = corral("start", str(system_dir), "web", cwd=elsewhere)
    assert started.returncode == 0, started.stderr
    assert "✔ web started (2/2 ready)" in started.stdout
    again = corral("start", str(system_dir), "web", cwd=elsewhere)
    assert "= web is already running (2/2 ready)" in again.stdout
    # A configuration change that web cannot take live rolls it, instance by instance.
    rolled = corral("config", "set", str(system_dir), "web", "GREETING=hi", cwd=elsewhere)
    assert rolled.returncode == 0, rolled.stderr
    assert re.search(r"✔ web-5 +ready", rolled.stdout), rolled.stdout
    assert re.search(r"- web-3 +stopped", rolled.stdout), rolled.stdout
    assert "web: rolling restart" in rolled.stdout

    api = status(system_dir)["api_url"]
    schemas = httpx.get(f"{api}/openapi.json", timeout=5).json()["components"]["schemas"]
    assert {"SystemStatus", "ServiceChange", "InstanceRecord", "Snapshot"} <= set(schemas)

    assert corral("down", "demo", cwd=elsewhere).returncode == 0
    assert json.loads(corral("ls", "--json", cwd=elsewhere).stdout) == []


def test_detached_up_forks_its_daemon_and_prints_where_the_time_went(system_dir: Path) -> None:
    """`up -d --timings`: the control plane is this command forked into its own session
    (not a second interpreter importing Corral again), and once ready the command
    prints the start-up timeline, each instance listening before ready; `status
    --json` carries the same phases."""
    up = corral("up", "-d", "--timings", cwd=system_dir)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "start-up timings" in up.stdout
    lines = {
        line.split()[0] + " " + line.split()[1]: line
        for line in up.stdout.splitlines()[1:]
        if line.startswith("  instance ")
    }
    assert {"instance api-1", "instance web-1"} <= set(lines), up.stdout
    assert all("listening" in line for line in lines.values())
    now = status(system_dir)
    daemon = psutil.Process(now["pid"])
    assert "--daemon" not in daemon.cmdline(), "forked from `corral up -d`, not spawned"
    assert os.getsid(daemon.pid) == daemon.pid, "its own session"
    phases = {phase["name"]: phase for phase in now["startup"]}
    assert phases["instance web-1"]["start"] >= phases["service api"]["end"]
