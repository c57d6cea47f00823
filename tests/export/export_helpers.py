"""Golden cases: a manifest, the targets, options; rendered as ``corral export`` would."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from ruamel.yaml import YAML

import testkit
from corral.export import (
    Export,
    ExportOptions,
    Sources,
    Target,
    read_sources,
    render,
    source_name,
)
from corral.manifest import Manifest, load
from corral.plan import Plan, resolve
from testkit import free_port

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "case.json").exists())
SDK = "corral==0.1.0"  # fixed, so a version bump does not change every golden file


def case_manifest(case: str) -> Manifest:
    spec = json.loads((GOLDEN / case / "case.json").read_text())
    return load(ROOT / spec["manifest"], environment=spec.get("environment"))


def case_plan(case: str) -> Plan:
    return resolve(case_manifest(case), python=sys.executable)


def render_case(case: str) -> Export:
    spec = json.loads((GOLDEN / case / "case.json").read_text())
    manifest = case_manifest(case)
    plan = resolve(manifest, python=sys.executable)
    source = source_name(manifest.path, manifest.overlay)
    options = ExportOptions(**{"sdk_requirement": SDK, "source": source, **spec.get("options", {})})
    sources = read_sources(plan)
    if "requirements" in spec:
        sources = Sources(requirements=tuple(spec["requirements"]), jwks=sources.jwks)
    return render(plan, [Target(t) for t in spec["targets"]], options=options, sources=sources)


def kubernetes_documents(export: Export) -> list[dict[str, Any]]:
    """Every object of the export's ``kubernetes/`` folder."""
    return [
        d
        for path, text in export.files.items()
        if path.startswith("kubernetes/") and path.endswith(".yaml")
        for d in YAML(typ="safe").load_all(text)
        if d
    ]


def expected_files(case: str) -> dict[str, str]:
    folder = GOLDEN / case / "expected"
    return {
        p.relative_to(folder).as_posix(): p.read_text()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``check`` until true; fail after ``timeout`` seconds."""
    testkit.wait_for(check, timeout=timeout, what=what)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def serve_greeter() -> Iterator[int]:
    """examples/hello's greeter, a real SDK service, on a free port until the block ends."""
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "CORRAL_SERVICE": "greeter"}
    process = subprocess.Popen(
        [sys.executable, "-m", "corral.sdk.serve", "greeter.app:svc"],
        cwd=ROOT / "examples" / "hello",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: process.poll() is not None or _ready(port), "greeter ready")
        assert process.poll() is None, "greeter exited"
        yield port
    finally:
        process.terminate()
        process.wait(timeout=15)
