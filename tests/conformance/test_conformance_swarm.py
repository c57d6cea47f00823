"""The conformance scenarios against the Swarm deployment of ``examples/hello`` (the
exported stack on a real single-node swarm, swarm_deployment.py): the same promises as
``corral up``'s runtimes (test_conformance.py), acted out with Swarm's own means, and
the stack converging, serving and being removed with nothing left.

Where Swarm really differs, the test says what Swarm does instead and checks that
(docs/runtimes.md's table has the same words), never a skip:
- dependencies: Swarm ignores ``depends_on``; front calls greeter through the SDK client,
  whose retries cover a greeter that is not there yet.
- secrets: ``${VAR:?}`` references in stack.yaml, resolved by ``docker stack deploy``
  from the deploying shell; the value is then in the service's spec (``docker service
  inspect`` shows environment values to whoever may manage the swarm)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance_helpers import SECRET, SECRET_VALUE
from swarm_deployment import Stack, deploy, docker, export_hello, single_node_swarm

from testkit import wait_for

# Cold: the base image (debootstrap) and three image builds take minutes.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

GRACE = 10
"""hello's stop_grace_period in the stack (the manifest's default)."""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    return export_hello(tmp_path_factory.mktemp("swarm"))


@pytest.fixture(scope="module")
def stack(exported: tuple[Path, int]) -> Iterator[Stack]:
    system, port = exported
    with single_node_swarm():
        yield from deploy(system, port, f"hello-{os.getpid()}", SECRET_VALUE)


def test_converges_and_serves_through_the_gateway_from_ready_tasks(stack: Stack) -> None:
    """Every service at its replicas, every task's container healthy (Swarm's readiness:
    the image's HEALTHCHECK gates the task) and running as the image's user (10001, not
    root), and both routes answer: /hello straight to greeter, /greet through front,
    which finds greeter by DNS round robin."""
    assert stack.replicas()[stack.service("greeter")].startswith("2/2")
    greeters = wait_for(lambda: stack.healthy("greeter", 2), timeout=60, what="2 greeters")
    front = wait_for(lambda: stack.healthy("front", 1), timeout=60, what="a healthy front")
    for container in greeters + front:
        assert docker("exec", container["Id"], "id", "-u").strip() == "10001"
    hello = stack.get("/hello/ada")
    assert hello.status_code == 200, hello.text
    assert "ada" in hello.text
    assert stack.get("/greet/ada").status_code == 200


def test_dependencies_are_not_ordered_but_front_answers(stack: Stack) -> None:
    """Expected difference: Swarm ignores ``depends_on`` (front may start before any
    greeter); the stack still carries it, and front's calls succeed (the SDK client's
    retries and greeter's readiness cover the order)."""
    spec = json.loads(docker("service", "inspect", stack.service("front")))[0]["Spec"]
    labels = spec.get("Labels", {})
    assert labels.get("com.docker.stack.namespace") == stack.name
    assert "depends_on" not in json.dumps(spec).lower()  # nothing in Swarm's model for it
    stack_file = (stack.folder / "stack.yaml").read_text()
    assert "depends_on:\n      - greeter" in stack_file  # exported, for Compose's sake
    assert stack.get("/greet/bob").status_code == 200


def test_kill_9_of_a_task_brings_a_replacement_task(stack: Stack) -> None:
    """SIGKILL of a greeter task's container: Swarm records the task failed (exit 137)
    and starts a replacement task in a new container, healthy and serving."""
    before = stack.healthy("greeter", 2)
    assert before, "2 healthy greeters before the kill"
    victim = before[0]["Id"]
    docker("kill", "--signal", "KILL", victim)

    def replaced() -> bool:
        now = stack.healthy("greeter", 2)
        return bool(now) and victim not in {c["Id"] for c in now or []}

    wait_for(replaced, timeout=120, every=0.5, what="a healthy replacement greeter task")
    killed = json.loads(docker("inspect", victim))[0]["State"]
    assert killed["ExitCode"] == 137, killed
    assert stack.get("/hello/bob").status_code == 200


def test_rolling_update_fails_no_request_through_the_gateway(stack: Stack) -> None:
    """``docker service update --force`` with the exported update_config (start-first,
    health-gated, rollback on failure) while requests flow through the exported gateway:
    every task is replaced and none of the requests fails."""
    failures: list[str] = []
    sent = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal sent
        while not stop.is_set():
            for path in ("/hello/load", "/greet/load"):
                try:
                    answer = stack.get(path)
                    if answer.status_code != 200:
                        failures.append(f"{path}: {answer.status_code} {answer.text[:100]}")
                except Exception as exc:  # a refused connection is a failure too
                    failures.append(f"{path}: {exc!r}")
                sent += 1

    before = {c["Id"] for c in stack.healthy("greeter", 2) or []}
    assert len(before) == 2
    worker = threading.Thread(target=load)
    worker.start()
    try:
        docker("service", "update", "--force", "--detach=false", "--quiet",
               stack.service("greeter"), timeout=300)  # fmt: skip
        after = wait_for(lambda: stack.healthy("greeter", 2), timeout=60, what="2 greeters")
    finally:
        stop.set()
        worker.join(timeout=30)
    assert before.isdisjoint({c["Id"] for c in after}), "every task was replaced"
    state = json.loads(docker("service", "inspect", stack.service("greeter")))[0]
    assert state.get("UpdateStatus", {}).get("State") == "completed", state.get("UpdateStatus")
    assert sent > 0
    assert failures == [], f"{len(failures)} of {sent} failed: {failures[:5]}"


def test_secrets_arrive_only_as_references(stack: Stack) -> None:
    """The stack file holds ``${GREETER_SIGNING_KEY:?…}``, never the value; deploying
    without the variable is refused with the file's message; the running task has the
    value in its environment and in nothing else Swarm shows (labels, command, args).
    Expected difference: the service spec holds the resolved value (``docker service
    inspect``), as Compose's container config does; docker secrets would keep it out of
    the spec, but services read their settings from the environment (docs/runtimes.md)."""
    text = (stack.folder / "stack.yaml").read_text()
    assert f"${{{SECRET}:?" in text
    assert SECRET_VALUE not in text
    refused = subprocess.run(
        ["docker", "stack", "deploy", "--resolve-image", "never", "-c", "stack.yaml",
         f"{stack.name}-nosecret"],
        cwd=stack.folder, capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if k != SECRET},
    )  # fmt: skip
    assert refused.returncode != 0
    assert f"greeter needs the secret {SECRET}" in refused.stderr + refused.stdout
    assert not docker("service", "ls", "-q", "--filter", f"name={stack.name}-nosecret_").strip()
    for container in stack.containers("greeter"):
        config = container["Config"]
        assert f"{SECRET}={SECRET_VALUE}" in config["Env"]
        shown = json.dumps([config.get("Labels"), config.get("Cmd"), config.get("Entrypoint"),
                            container.get("Args"), container.get("Path")])  # fmt: skip
        assert SECRET_VALUE not in shown
        logs = subprocess.run(["docker", "logs", container["Id"]], capture_output=True,
                              text=True, check=True, timeout=30)  # fmt: skip
        assert SECRET_VALUE not in logs.stdout + logs.stderr
    front = stack.containers("front")
    assert front
    assert not any(SECRET in "".join(c["Config"]["Env"]) for c in front)


def test_stop_ends_tasks_within_the_grace_period(stack: Stack) -> None:
    """Scaling front to 0 stops its task with SIGTERM: the container exits 0 (not the
    137 of the SIGKILL after the grace) and uvicorn finished its graceful shutdown."""
    running = stack.healthy("front", 1)
    assert running
    container = running[0]["Id"]
    # The module's last scenario: front stays at 0 until the stack is removed.
    docker("service", "scale", "--detach=false", f"{stack.service('front')}=0",
           timeout=GRACE + 120)  # fmt: skip
    state = wait_for(
        lambda: (s := json.loads(docker("inspect", container))[0]["State"])["Running"]
        is False and s,
        timeout=GRACE + 30, what="front's container stopped",
    )  # fmt: skip
    assert state["ExitCode"] == 0, state
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True,
                          check=True, timeout=30)  # fmt: skip
    assert "Finished server process" in logs.stdout + logs.stderr
    assert stack.get("/hello/still").status_code == 200  # greeter serves on
