"""The telemetry tests' system: front -> back behind the gateway (the fixture that starts
it is in this folder's conftest). A module of its own, not the conftest, so test modules
can import it by a name no other folder's conftest shadows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

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
