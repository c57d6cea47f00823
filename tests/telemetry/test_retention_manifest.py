"""Telemetry retention from the manifest (``telemetry: {keep, max_size}``): used by the
kept store, overridden by the environment, and a bad value is a located manifest error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from corral.manifest import ManifestError, parse
from corral.plan import Plan, resolve
from corral.telemetry._addon import retention

MANIFEST = """\
name: shop
services:
  web:
    command: ["python", "-m", "http.server"]
telemetry:
  keep: {keep}
  max_size: {size}
"""


def _plan(keep: str, size: str, tmp_path: Path) -> Plan:
    manifest = parse(MANIFEST.format(keep=keep, size=size), tmp_path / "corral.yaml")
    return resolve(manifest, python=sys.executable)


def test_the_manifest_sets_retention_and_the_environment_overrides(tmp_path: Path) -> None:
    """keep and max_size reach the store's retention; CORRAL_TELEMETRY_* still win."""
    plan = _plan("168h", "2Gi", tmp_path)
    assert retention({}, plan)[:2] == (168 * 3600.0, 2 * 2**30)
    environ = {"CORRAL_TELEMETRY_KEEP": "2h", "CORRAL_TELEMETRY_MAX_SIZE": "100MB"}
    assert retention(environ, plan)[:2] == (7200.0, 100_000_000)
    assert retention({})[:2] == (24 * 3600.0, 512 * 1024 * 1024)


@pytest.mark.parametrize(
    ("keep", "size", "words"),
    [
        ("10s", "1Gi", "a minute at least"),
        ("forever", "1Gi", "invalid duration"),
        ("24h", "1Mi", "16Mi at least"),
        ("24h", "512MB", "did you mean '512Mi'"),
    ],
)
def test_a_bad_value_is_a_located_error(tmp_path: Path, keep: str, size: str, words: str) -> None:
    """A value the store cannot use names its key and line in corral.yaml."""
    with pytest.raises(ManifestError) as raised:
        _plan(keep, size, tmp_path)
    shown = raised.value.render()
    assert words in shown, shown
    key = "keep" if words in ("a minute at least", "invalid duration") else "max_size"
    assert f"telemetry.{key}" in shown, shown
    line = 6 if key == "keep" else 7
    assert f"corral.yaml:{line}:" in shown, shown
