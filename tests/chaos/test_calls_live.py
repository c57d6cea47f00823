"""Caller-side faults for real: examples/hello (front calls greeter) under `corral up -d`,
faulted with `corral chaos calls front greeter`. The fault acts in front's own client
only: front's /greet fails while greeter, called straight through the gateway, answers;
front's policy reacts (retries, then its breaker opens); the fault is lifted by
`corral chaos stop` and on expiry. Also an experiment file with a `calls` step that
holds, the same one with a false hypothesis exiting 1, and each bad request refused in
one line with nothing begun."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

import testkit
from testkit import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"


def corral(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return testkit.corral(*args, cwd=cwd, timeout=timeout)


@dataclass
class Hello:
    root: Path
    gateway: str
    api: str
    token: str

    def greet(self) -> httpx.Response:
        return httpx.get(f"{self.gateway}/greet/ann", timeout=10)

    def front_metric(self, name: str) -> float:
        """``name{target="greeter"}`` summed over front's instances (their /metrics)."""
        status = self.status()
        total = 0.0
        for record in status["instances"]:
            if record["service"] != "front" or not record["ready"]:
                continue
            text = httpx.get(f"http://{record['host']}:{record['port']}/metrics").text
            for line in text.splitlines():
                if line.startswith(name + "{") and 'target="greeter"' in line:
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def status(self) -> dict[str, Any]:
        answer = httpx.get(
            f"{self.api}/v1/status", headers={"authorization": f"Bearer {self.token}"}, timeout=10
        )
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def chaos(self) -> dict[str, Any]:
        listed = corral("chaos", "list", "--json", cwd=self.root)
        assert listed.returncode == 0, listed.stderr
        result: dict[str, Any] = json.loads(listed.stdout)
        return result


def copy_hello(dest: Path) -> Path:
    root = dest / "hello"
    shutil.copytree(HELLO, root, ignore=shutil.ignore_patterns(".corral", "__pycache__"))
    return root


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hello]:
    """examples/hello running in the background from a copy; down afterwards."""
    root = copy_hello(tmp_path_factory.mktemp("calls"))
    up = corral("up", "-d", cwd=root, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        status = json.loads(corral("status", "--json", cwd=root).stdout)
        token = (root / ".corral" / "token").read_text().strip()
        system = Hello(root, status["gateway_url"], status["api_url"], token)
        wait_for(lambda: system.greet().status_code == 200, timeout=30, what="front ready")
        yield system
    finally:
        corral("down", cwd=root, timeout=90)


def test_a_caller_side_abort_hits_only_that_callers_calls_and_is_stopped(hello: Hello) -> None:
    """abort 503 on front -> greeter: /greet fails (front's 502 after its client retried
    and its breaker opened), greeter itself still answers through the gateway; stopped,
    /greet answers again."""
    retries_before = hello.front_metric("corral_client_retries_total")
    begun = corral(
        "chaos", "calls", "front", "greeter", "--abort", "503", "--for", "2m", cwd=hello.root
    )
    assert begun.returncode == 0, begun.stderr
    assert "calls  front -> greeter  abort 503 on 100% of the calls from front" in begun.stdout
    [active] = hello.chaos()["active"]
    assert (active["kind"], active["caller"], active["target"]) == ("calls", "front", "greeter")

    failed = wait_for(
        lambda: (r := hello.greet()).status_code == 502 and r, timeout=20, what="/greet failing"
    )
    assert failed.json()["title"] == "greeter unavailable"
    assert httpx.get(f"{hello.gateway}/hello/ann", timeout=10).status_code == 200
    assert hello.front_metric("corral_client_faults_injected_total") >= 1
    assert hello.front_metric("corral_client_retries_total") > retries_before

    def breaker_open() -> bool:
        hello.greet()
        circuits = hello.status()["open_circuits"]
        return any(c["service"] == "front" and c["target"] == "greeter" for c in circuits)

    wait_for(breaker_open, timeout=30, what="front's breaker on greeter to open")

    stopped = corral("chaos", "stop", active["id"], cwd=hello.root)
    assert stopped.returncode == 0, stopped.stderr
    wait_for(lambda: hello.greet().status_code == 200, timeout=40, what="/greet recovered")
    [ended] = [e for e in hello.chaos()["recent"] if e["id"] == active["id"]]
    assert (ended["state"], ended["outcome"]) == ("stopped", "fault lifted")


def test_a_caller_side_fault_ends_on_expiry(hello: Hello) -> None:
    """abort 500 for 3 s: /greet fails, then answers again once the fault has expired."""
    begun = corral(
        "chaos", "calls", "front", "greeter", "--abort", "500", "--for", "3s", cwd=hello.root
    )
    assert begun.returncode == 0, begun.stderr
    wait_for(lambda: hello.greet().status_code == 502, timeout=20, what="/greet failing")
    wait_for(lambda: hello.greet().status_code == 200, timeout=40, what="/greet after expiry")
    assert not hello.chaos()["active"]
    assert hello.chaos()["recent"][0]["state"] == "expired"


EXPERIMENT = """
title: greeter slow for front, greetings still answered
hypothesis:
  during: true
  every: 500ms
  recover_within: 30s
  probes:
    - {{type: http, url: /greet/ann, status: 200}}
method:
  - {{action: calls, caller: front, target: greeter, {fault}, duration: 3s}}
"""


def test_an_experiment_with_a_calls_step_holds_and_a_false_hypothesis_exits_1(
    hello: Hello,
) -> None:
    """A 100 ms delay on front -> greeter (under its 1 s timeout) keeps /greet answering:
    held, exit 0. An abort of every call breaks the same hypothesis during the method:
    not held, exit 1."""
    (hello.root / "slow.yaml").write_text(EXPERIMENT.format(fault="delay: 100ms"))
    held = corral("chaos", "run", "slow.yaml", "--json", cwd=hello.root)
    report = json.loads(held.stdout)
    assert held.returncode == 0, json.dumps(report, indent=1)
    assert report["verdict"] == "held"
    assert "delay 100ms on 100% of the calls from front" in report["steps"][0]["detail"]

    (hello.root / "broken.yaml").write_text(EXPERIMENT.format(fault="abort: 503"))
    broken = corral("chaos", "run", "broken.yaml", "--json", cwd=hello.root)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert json.loads(broken.stdout)["verdict"] == "not held"
    wait_for(lambda: hello.greet().status_code == 200, timeout=40, what="/greet recovered")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("nobody", "greeter", "--abort", "503"), "unknown service"),
        (("front", "nobody", "--abort", "503"), "unknown service"),
        (("greeter", "front", "--abort", "503"), "greeter does not declare calling front"),
        (("front", "greeter", "--abort", "503", "--for", "2h"), "invalid duration"),
        (("front", "greeter"), "say what to inject"),
    ],
)
def test_bad_requests_are_one_line_and_begin_nothing(
    hello: Hello, args: tuple[str, ...], expected: str
) -> None:
    """Unknown caller or target, an undeclared call, too long, nothing to inject: one
    clear line, no traceback, no experiment begun."""
    result = corral("chaos", "calls", *args, cwd=hello.root)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not hello.chaos()["active"]


def test_a_system_not_running_is_one_line(tmp_path: Path) -> None:
    """`chaos calls` against a manifest whose system is not up: one line, exit != 0."""
    root = copy_hello(tmp_path)
    result = corral("chaos", "calls", "front", "greeter", "--abort", "503", cwd=root)
    assert result.returncode != 0
    assert "no system is running" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_cpu_throttle_slows_an_instance_and_ends_with_it_running(hello: Hello) -> None:
    """`corral chaos cpu greeter-1 --percent 90 --for 3s`: the instance is stopped most of
    the time (seen stopped at least once), greeter still answers, and after the expiry
    the process is running, not left stopped."""
    begun = corral("chaos", "cpu", "greeter-1", "--percent", "90", "--for", "3s", cwd=hello.root)
    assert begun.returncode == 0, begun.stderr
    assert "cpu  greeter-1  stopped 90% of every 100ms" in begun.stdout
    [pid] = [i["pid"] for i in hello.status()["instances"] if i["instance"] == "greeter-1"]
    wait_for(
        lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED,
        timeout=5,
        every=0.01,
        what="greeter-1 stopped by the throttle",
    )
    assert httpx.get(f"{hello.gateway}/hello/ann", timeout=10).status_code == 200
    wait_for(lambda: not hello.chaos()["active"], timeout=20, what="the throttle's expiry")
    assert hello.chaos()["recent"][0]["outcome"] == "throttle ended: running freely"
    assert psutil.Process(pid).status() != psutil.STATUS_STOPPED
