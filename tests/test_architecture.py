"""Import boundaries: the architecture in docs/architecture.md, enforced.

Imports flow inward: cli/api/control -> runtime/gateway/broker/export -> plan -> manifest.
The SDK imports nothing of the control plane; the pure core never imports the runtime.
Every import is checked, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "corral"

# package -> corral packages it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "contract": set(),
    "manifest": {"contract"},
    "plan": {"contract", "manifest"},
    # Architecture checks read the manifest (for locations) and its plan; nothing runs.
    "lint": {"contract", "manifest", "plan"},
    "sdk": {"contract"},
    "runtime": {"contract", "manifest", "plan"},
    "gateway": {"contract", "manifest", "plan", "runtime"},
    # The broker provisions exactly the streams and consumers the SDK's events module
    # names (subjects, stream configs, the envelope): one definition, read by both sides.
    # The reverse never happens: the SDK imports nothing of the control plane.
    "broker": {"contract", "manifest", "plan", "runtime", "sdk"},
    "export": {"contract", "manifest", "plan", "gateway", "broker", "sdk"},
    # Container runtime: images from the exporter's Dockerfile, run through the runtime's
    # driver seam (the runtime itself never imports export).
    "images": {"contract", "manifest", "plan", "runtime", "export"},
    # The API serves the dashboard's static page (which imports nothing).
    "api": {"contract", "manifest", "plan", "runtime", "dashboard", "config", "chaos"},
    # Chaos experiments: the pure model and verdicts, and a runner acting through a
    # Target protocol (the API client, wired by the CLI).
    "chaos": {"contract", "manifest", "runtime"},
    "dashboard": set(),
    # Scraping, traces and Prometheus targets: follows the registry as an addon.
    "telemetry": {"contract", "plan", "runtime"},
    # Configuration management: versions and their rollout, an addon of the runtime.
    "config": {"contract", "manifest", "plan", "runtime"},
    "control": {
        "contract",
        "manifest",
        "plan",
        "runtime",
        "gateway",
        "broker",
        "api",
        "sdk",
        "telemetry",
        "config",
        "images",
        "autoscale",
        "chaos",
    },
    # Autoscaling decisions: pure, from a service's plan and measures.
    "autoscale": {"plan"},
    # `corral up --watch`: files -> services (pure); reloads go through the control API.
    "watch": {"contract", "manifest", "plan", "runtime", "api"},
    "cli": {
        "contract",
        "manifest",
        "plan",
        "runtime",
        "gateway",
        "broker",
        "export",
        "api",
        "control",
        "sdk",
        "lint",
        "config",
        "images",
        "watch",
        # `corral traces`/`logs --grep` read the kept store's file once the system is down.
        "telemetry",
        "chaos",
    },
}

# corral.errors (CorralError, the root of every error raised on purpose) may be imported
# by every control-plane package; never by the SDK, nor by what the SDK shares (contract).
ALLOWED["errors"] = set()
for _package in ALLOWED.keys() - {"contract", "sdk", "dashboard", "errors"}:
    ALLOWED[_package].add("errors")


def _package_of(path: Path) -> str:
    relative = path.relative_to(SRC)
    return relative.parts[0].removesuffix(".py") if relative.parts else ""


def _corral_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "corral":
                names = [f"corral.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "corral" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def _private_imports(path: Path) -> list[tuple[int, str]]:
    """Imports of another package's private module (``corral.<pkg>._<module>``)."""
    own = _package_of(path) if path.is_relative_to(SRC) else ""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            private = any(part.startswith("_") for part in parts[2:])
            if len(parts) > 2 and parts[0] == "corral" and parts[1] != own and private:
                found.append((node.lineno, name))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "__main__.py" or p.parent != SRC)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_respects_import_boundaries(path: Path) -> None:
    """A module imports only packages further in than its own (docs/architecture.md)."""
    package = _package_of(path)
    if package in ("__init__", "py"):
        return
    assert package in ALLOWED, f"new top-level package {package!r}: add it to ALLOWED"
    allowed = ALLOWED[package] | {package}
    bad = [(line, target) for line, target in _corral_imports(path) if target not in allowed]
    assert not bad, f"{path.relative_to(SRC)} imports {bad} but {package} may only import {allowed}"


def test_boundary_check_catches_a_violation(tmp_path: Path) -> None:
    """The checker sees imports inside functions too (so the test above can fail)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from corral.runtime import registry\n    import corral.cli\n")
    assert _corral_imports(module) == [(2, "runtime"), (3, "cli")]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_uses_other_packages_through_their_public_surface(path: Path) -> None:
    """Another package's ``_private`` modules are its own: what others need is re-exported
    from its ``__init__`` (so a package can move code between its modules freely)."""
    bad = _private_imports(path)
    assert not bad, f"{path.relative_to(SRC)} reaches into private modules: {bad}"


def test_private_import_check_catches_a_reach(tmp_path: Path) -> None:
    """The private-module check sees a reach into another package (so it can fail)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from corral.plan._gateway import GatewayPlan\n")
    assert _private_imports(module) == [(2, "corral.plan._gateway")]
