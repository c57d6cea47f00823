"""`corral chaos` against a real system: `corral up -d` (real orchestrator, real Envoy,
real service processes), experiments started and listed through the CLI, traffic through
the gateway."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from test_cli_system import FIXTURE, corral, detached, wait_for

from corral.api import ApiClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def ok(*args: str, cwd: Path) -> str:
    result = corral(*args, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


MANIFEST = f"""name: chaosdemo
services:
  web:
    command: [{sys.executable}, {FIXTURE}]
    replicas: 2
    # Fast checks, so a paused instance leaves traffic within a few tenths of a second.
    readiness: {{http: /readyz, period: 100ms, timeout: 200ms, failure_threshold: 1}}
    restart: {{backoff: {{initial: 50ms, max: 200ms}}}}
    stop_grace_period: 2s
    database: none
  quiet:
    command: [{sys.executable}, {FIXTURE}]
    readiness: /readyz
    database: none
gateway:
  routes:
    - {{match: {{prefix: /}}, service: web}}
"""


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A running system (two web replicas behind Envoy), taken down afterwards."""
    with detached(tmp_path_factory.mktemp("chaos"), MANIFEST) as folder:
        yield folder


def status(cwd: Path) -> dict[str, Any]:
    """The API's status (read directly: a CLI process per poll is too slow to watch a
    pause of a few seconds)."""
    with ApiClient.for_state_dir(cwd / ".corral") as client:
        return client.status().model_dump(mode="json")


def record(cwd: Path, instance: str) -> dict[str, Any]:
    return next(i for i in status(cwd)["instances"] if i["instance"] == instance)


def experiments(cwd: Path) -> dict[str, Any]:
    with ApiClient.for_state_dir(cwd / ".corral") as client:
        return client.chaos().model_dump(mode="json")


def experiment_id(output: str) -> str:
    found = re.search(r"chaos-\d+", output)
    assert found, output
    return found.group(0)


def answers(url: str, count: int = 20) -> list[tuple[int, str]]:
    with httpx.Client(base_url=url, timeout=5) as client:
        return [(r.status_code, r.text.strip()) for r in (client.get("/") for _ in range(count))]


def test_a_killed_instance_is_replaced(system: Path) -> None:
    """chaos kill: SIGKILL to the instance's process; its slot runs a new one, ready."""
    before = record(system, "web-1")
    out = ok("chaos", "kill", "web-1", cwd=system)
    assert f"SIGKILL to pid {before['pid']}" in out
    wait_for(
        lambda: (r := record(system, "web-1"))["ready"] and r["pid"] != before["pid"],
        what="web-1 to be replaced and ready",
    )
    assert not psutil.pid_exists(before["pid"]) or (
        psutil.Process(before["pid"]).status() == psutil.STATUS_ZOMBIE
    )
    listed = json.loads(ok("chaos", "list", "--json", cwd=system))
    [ended] = [e for e in listed["recent"] if e["kind"] == "kill"]
    assert (ended["target"], ended["state"]) == ("web-1", "done")


def test_a_paused_instance_leaves_traffic_and_comes_back(system: Path) -> None:
    """chaos pause: SIGSTOP, readiness fails and the gateway stops sending to it; chaos
    stop continues it (the same process), ready and served again."""
    url = status(system)["gateway_url"]
    victim = record(system, "web-2")
    chaos_id = experiment_id(ok("chaos", "pause", "web-2", "--for", "60s", cwd=system))
    assert psutil.Process(victim["pid"]).status() == psutil.STATUS_STOPPED
    wait_for(lambda: not record(system, "web-2")["ready"], what="web-2 out of readiness")
    assert "chaos    " + chaos_id in ok("status", cwd=system)
    [active] = status(system)["chaos"]
    assert (active["id"], active["kind"], active["target"]) == (chaos_id, "pause", "web-2")
    # Out of the endpoints: every request reaches web-1 (let Envoy apply the change).
    wait_for(lambda: {text for _, text in answers(url, 6)} == {"web-1"}, what="web-1 only")
    assert answers(url) == [(200, "web-1")] * 20
    assert "SIGCONT: running again" in ok("chaos", "stop", chaos_id, cwd=system)
    [ended] = [e for e in experiments(system)["recent"] if e["id"] == chaos_id]
    assert (ended["state"], ended["outcome"]) == ("stopped", "SIGCONT: running again")
    wait_for(lambda: record(system, "web-2")["ready"], what="web-2 ready again")
    assert record(system, "web-2")["pid"] == victim["pid"]  # the same process, continued
    wait_for(lambda: "web-2" in {text for _, text in answers(url, 6)}, what="web-2 served")


def test_a_pause_expires_by_itself(system: Path) -> None:
    """A 1s pause ends on its own (no command after it): the process runs again."""
    victim = record(system, "web-2")
    chaos_id = experiment_id(ok("chaos", "pause", "web-2", "--for", "1s", cwd=system))
    wait_for(lambda: not experiments(system)["active"], timeout=10, what="the pause to end")
    [ended] = [e for e in experiments(system)["recent"] if e["id"] == chaos_id]
    assert (ended["state"], ended["outcome"]) == ("expired", "SIGCONT: running again")
    assert psutil.Process(victim["pid"]).status() != psutil.STATUS_STOPPED
    wait_for(lambda: record(system, "web-2")["ready"], what="web-2 ready again")


def test_a_gateway_abort_fails_every_request_until_stopped(system: Path) -> None:
    """chaos gateway --abort 503 --percent 100: every request through the route gets
    503; after chaos stop, none does (both live, no reload)."""
    url = status(system)["gateway_url"]
    assert {code for code, _ in answers(url)} == {200}
    out = ok("chaos", "gateway", "web", "--abort", "503", "--percent", "100", "--for", "60s",
             cwd=system)  # fmt: skip
    chaos_id = experiment_id(out)
    assert {code for code, _ in answers(url)} == {503}
    stopped = ok("chaos", "stop", chaos_id, cwd=system)
    assert chaos_id in stopped
    assert {code for code, _ in answers(url)} == {200}
    assert experiments(system)["active"] == []


def test_a_gateway_fault_expires_by_itself(system: Path) -> None:
    """A delay fault is injected (Envoy counts it), then ends on its own: no command, no
    more delays."""
    cwd = system
    found = status(cwd)
    url, metrics = found["gateway_url"], found["gateway_metrics_url"]
    before = delays_injected(metrics)
    chaos_id = experiment_id(ok("chaos", "gateway", "web", "--delay", "50ms", "--for", "6s",
                                cwd=cwd))  # fmt: skip
    assert {code for code, _ in answers(url, 3)} == {200}
    with ApiClient.for_state_dir(cwd / ".corral") as client:
        still_active = any(e.id == chaos_id for e in client.chaos().active)
    # On a machine slow enough that the fault ended before the three answers, none of
    # them need have been delayed: only the expiry is checked then.
    if still_active:
        assert delays_injected(metrics) >= before + 3
    wait_for(lambda: not experiments(cwd)["active"], timeout=30, what="the fault to expire")
    [ended] = [e for e in experiments(cwd)["recent"] if e["id"] == chaos_id]
    assert (ended["state"], ended["outcome"]) == ("expired", "fault cleared")
    after = delays_injected(metrics)
    answers(url, 5)
    assert delays_injected(metrics) == after


def delays_injected(metrics_url: str) -> float:
    text = httpx.get(metrics_url, timeout=5).text
    found = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("envoy_http_fault_delays_injected")
    ]
    return sum(found)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("kill", "nope-1"), "unknown instance or service"),
        (("gateway", "quiet", "--abort", "503"), "no gateway route leads to 'quiet'"),
        (("stop", "chaos-999"), "no such experiment"),
    ],
)
def test_mistakes_are_clear_errors(system: Path, args: tuple[str, ...], message: str) -> None:
    """A wrong target, a route-less service or an unknown experiment: a one-line error,
    never a traceback (durations out of bounds: tests/api)."""
    result = corral("chaos", *args, cwd=system)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# --- experiment files: `corral chaos run` ---------------------------------------------

STORM = """\
title: web survives kills and a pause
hypothesis:
  recover_within: 30s
  every: 200ms
  probes:
    - {type: ready}
    - {type: http, url: /, status: 200, body_contains: web-}
method:
  # The pause first: after the kills, web-2 may be between processes (nothing to pause).
  - {action: pause, target: web-2, duration: 1s}
  - {action: kill, target: web, repeat: 2, every: 300ms}
"""


def test_an_experiment_that_holds_exits_0_and_is_recorded(system: Path) -> None:
    """chaos run: kills and a pause, the system heals in time: exit 0, the report
    names each probe's values, and `chaos list` and the API show the run."""
    (system / "storm.yaml").write_text(STORM)
    result = corral("chaos", "run", "storm.yaml", "--json", cwd=system)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] == "held"
    assert [p["type"] for p in report["after"]["probes"]] == ["ready", "http"]
    assert report["after"]["probes"][1]["value"] == 200
    assert [len(s["experiments"]) for s in report["steps"]] == [1, 2]
    listed = ok("chaos", "list", cwd=system)
    assert f"{report['id']}  held  web survives kills and a pause (storm.yaml)" in listed
    with ApiClient.for_state_dir(system / ".corral") as client:
        assert client.chaos_runs()[0].id == report["id"]
    assert (system / ".corral" / "chaos" / "runs" / f"{report['id']}.json").is_file()


def test_a_false_hypothesis_exits_1(system: Path) -> None:
    """A hypothesis the system cannot meet (a body it never answers): not held, exit 1,
    the probe's observed status and the reason printed."""
    (system / "false.yaml").write_text(
        "title: an impossible body\nhypothesis:\n  recover_within: 1s\n  probes:\n"
        "    - {type: http, url: /, body_contains: nobody-answers-this}\n"
        "method:\n  - {action: wait, duration: 100ms}\n"
    )
    result = corral("chaos", "run", "false.yaml", cwd=system)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not held: not steady before the method" in result.stdout
    assert "the body lacks 'nobody-answers-this'" in result.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "title: t\nhypothesis:\n  probes: [{type: ready}]\n"
            "method:\n  - {action: kill, targt: web}\n",
            "bad.yaml:5:20: method[0].targt: unknown key 'targt' (did you mean 'target'?)",
        ),
        (
            "title: t\nhypothesis:\n  probes: [{type: ready}]\n"
            "method:\n  - {action: kill, target: nope}\n",
            "method[0]: no service named 'nope' in chaosdemo (quiet, web)",
        ),
    ],
)
def test_a_malformed_experiment_exits_2_and_changes_nothing(
    system: Path, text: str, message: str
) -> None:
    """A typo, or a target the system lacks: exit 2, one located line, nothing begun."""
    (system / "bad.yaml").write_text(text)
    before = experiments(system)
    result = corral("chaos", "run", "bad.yaml", cwd=system)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in " ".join((result.stdout + result.stderr).split())
    assert "Traceback" not in result.stderr
    assert experiments(system)["recent"] == before["recent"]
