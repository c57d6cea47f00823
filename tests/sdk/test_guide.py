"""docs/guide/first-service.md works as written: every Python snippet runs, its test
passes under pytest, and the system its files make answers through a real ``corral up``
(gateway, NATS, four services): a call through ``svc.client`` and an event round trip."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sdk_helpers import ROOT, wait_for

from testkit import corral

GUIDE = ROOT / "docs" / "guide" / "first-service.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
FILE_NAME = re.compile(r"#\s*([\w./-]+\.(?:py|yaml))\s*$")


def snippets(language: str) -> list[tuple[int, str, str | None]]:
    """(line, code, file name) of the guide's ``language`` blocks; a block whose first
    line is a comment naming a file (``# front/app.py``) is that file."""
    text = GUIDE.read_text()
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) != language:
            continue
        code = match.group(2)
        named = FILE_NAME.match(code.splitlines()[0])
        line = text.count("\n", 0, match.start(2)) + 1
        found.append((line, code, named.group(1) if named else None))
    return found


def test_every_snippet_that_is_not_a_file_runs() -> None:
    """The standalone snippets (settings, database, identity, plugging in) execute:
    every name they use is imported or defined."""
    standalone = [(line, code) for line, code, name in snippets("python") if name is None]
    assert len(standalone) >= 4
    for line, code in standalone:
        exec(compile(code, f"{GUIDE}:{line}", "exec"), {"__name__": f"guide_line_{line}"})


@pytest.fixture(scope="module")
def system_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide's files, written where their first lines say."""
    folder = tmp_path_factory.mktemp("guide")
    written = []
    for _, code, name in snippets("python") + snippets("yaml"):
        if name is not None:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(code)
            written.append(name)
    assert {"greeter/app.py", "front/app.py", "corral.yaml", "test_greeter.py"} <= set(written)
    return folder


def test_the_guides_test_passes(system_dir: Path) -> None:
    """Section 9's test, run by pytest as a reader would run it."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "test_greeter.py",
        ],
        cwd=system_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.fixture(scope="module")
def gateway(system_dir: Path) -> Iterator[str]:
    up = corral("up", "-d", cwd=system_dir)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        status = corral("status", "--json", cwd=system_dir)
        assert status.returncode == 0, status.stderr
        yield str(json.loads(status.stdout)["gateway_url"])
    finally:
        corral("down", cwd=system_dir, timeout=60)


@pytest.mark.integration
def test_a_call_through_the_client(gateway: str) -> None:
    """Section 5: front asks greeter by name, through the gateway."""
    answer = httpx.get(gateway + "/greet/ada", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"greeting": "hello, ada!"}


@pytest.mark.integration
def test_an_event_round_trip(gateway: str) -> None:
    """Section 6: orders publishes order.placed, kitchen answers order.ready, orders
    records the cook."""
    placed = httpx.post(gateway + "/orders/o1", timeout=10)
    assert placed.json() == {"order_id": "o1", "state": "placed"}

    def ready() -> bool:
        return httpx.get(gateway + "/orders/o1", timeout=5).json().get("state") == "ready"

    wait_for(ready, timeout=30, what="order o1 to be ready")
    assert httpx.get(gateway + "/orders/o1", timeout=5).json()["cook"] == "kim"
