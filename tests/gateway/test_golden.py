"""Golden renders: whole Envoy configs compared with files under golden/<case>/.

Regenerate after an intended change with ``CORRAL_REGEN_GOLDEN=1 uv run pytest
tests/gateway/test_golden.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from corral.gateway import Layout, Ports, canonical, render, render_static, validate_config
from corral.manifest import parse
from corral.plan import GatewayPlan, resolve
from corral.runtime.registry import InstanceRecord, InstanceState, Snapshot

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
REGEN = os.environ.get("CORRAL_REGEN_GOLDEN") == "1"
PORTS = Ports(listener=10000, stats=10001)


def _inputs(case: str, *, real_path: bool = False) -> tuple[GatewayPlan, Snapshot]:
    folder = GOLDEN / case
    # A fixed virtual path keeps absolute paths (JWKS files) stable across machines;
    # Envoy's validator needs the real one (it reads local JWKS files).
    where = folder / "corral.yaml" if real_path else f"/corral/{case}/corral.yaml"
    manifest = parse((folder / "corral.yaml").read_text(), where)
    plan = resolve(manifest, python=sys.executable)
    records = tuple(
        InstanceRecord(
            service=item["service"],
            instance=item["instance"],
            host="127.0.0.1",
            port=item["port"],
            state=InstanceState(item["state"]),
            ready=item["ready"],
        )
        for item in json.loads((folder / "instances.json").read_text())
    )
    assert plan.gateway is not None
    return plan.gateway, Snapshot(7, records)


@pytest.mark.parametrize("case", CASES)
def test_golden_render(case: str) -> None:
    """The rendered bootstrap, RDS, CDS and EDS files equal the golden file exactly."""
    gateway, snapshot = _inputs(case)
    config = render(gateway, snapshot, ports=PORTS, layout=Layout("/corral/state/gateway"))
    text = canonical(config.files())
    expected = GOLDEN / case / "expected.json"
    if REGEN:
        expected.write_text(text)
    assert text == expected.read_text(), f"golden {case} differs; regenerate and review"


@pytest.mark.parametrize("case", CASES)
def test_golden_config_passes_envoy_validate(case: str) -> None:
    """Envoy itself accepts the rendered config (everything inlined, --mode validate)."""
    gateway, snapshot = _inputs(case, real_path=True)
    result = validate_config(render_static(gateway, snapshot, ports=PORTS))
    assert result.ok, result.output[-2000:]


def test_render_is_deterministic() -> None:
    """Two renders of the same inputs are byte-identical, whatever the instance order."""
    gateway, snapshot = _inputs("full")
    reordered = Snapshot(snapshot.version, tuple(reversed(snapshot.instances)))
    layout = Layout("/x")
    first = canonical(render(gateway, snapshot, ports=PORTS, layout=layout).files())
    second = canonical(render(gateway, reordered, ports=PORTS, layout=layout).files())
    assert first == second
