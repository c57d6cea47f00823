"""A running system for the telemetry tests: `corral up -d` of front -> back behind the
gateway, shared by the integration tests of this folder (started once per file)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit import corral

APPS = Path(__file__).parent / "apps"


MANIFEST = """
name: telemetry
services:
  back:
    app: back:svc
    replicas: 2
    readiness: {{http: /readyz, period: 100ms}}
    database: none
    env: {{PYTHONPATH: "{apps}", OTEL_BSP_SCHEDULE_DELAY: "100"}}
  front:
    app: front:svc
    depends_on: {{back: healthy}}
    readiness: {{http: /readyz, period: 100ms}}
    database: none
    env: {{PYTHONPATH: "{apps}", OTEL_BSP_SCHEDULE_DELAY: "100"}}
gateway:
  routes:
    - {{match: {{prefix: /chain}}, service: front}}
    - {{match: {{prefix: /}}, service: back}}
"""


@dataclass
class System:
    root: Path
    status: dict[str, Any]
    token: str

    @property
    def api(self) -> str:
        return str(self.status["api_url"])

    @property
    def gateway(self) -> str:
        return str(self.status["gateway_url"])

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(
            self.api + path,
            params=params,
            headers={"authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()


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
