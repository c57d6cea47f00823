"""A running system for the telemetry tests: `corral up -d` of front -> back behind the
gateway, shared by the integration tests of this folder (started once per file)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from telemetry_system import APPS, MANIFEST, System

from testkit import corral


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The system, up and ready; taken down afterwards."""
    root = tmp_path_factory.mktemp("telemetry")
    (root / "corral.yaml").write_text(MANIFEST.format(apps=APPS))
    up = corral("up", "-d", cwd=root)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        status = json.loads(corral("status", "--json", cwd=root).stdout)
        token = (root / ".corral" / "token").read_text().strip()
        yield System(root, status, token)
    finally:
        corral("down", cwd=root, timeout=60)
