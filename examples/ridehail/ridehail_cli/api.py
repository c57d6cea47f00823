"""A thin client of ridehail's public API (through the gateway), one per person."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADMIN_EMAIL = "admin@ridehail.local"
ADMIN_PASSWORD = "change-me-admin"
PASSWORD = "correct-horse-battery"


def find_gateway(explicit: str | None) -> str:
    """--gateway, else RIDEHAIL_URL, else CORRAL_GATEWAY_URL (set for the commands of a
    chaos experiment), else ``corral status --json`` of the system next to this package."""
    if explicit:
        return explicit.rstrip("/")
    for variable in ("RIDEHAIL_URL", "CORRAL_GATEWAY_URL"):
        if os.environ.get(variable):
            return os.environ[variable].rstrip("/")
    status = corral_status()
    url = status.get("gateway_url")
    if not url:
        raise SystemExit(
            "no gateway found: start the system (`corral up` in examples/ridehail) or pass "
            "--gateway http://127.0.0.1:PORT"
        )
    return str(url).rstrip("/")


def bus_url() -> str | None:
    """The event bus with the control plane's credentials (the sim reads dead letters);
    ``corral status`` shows it without them. None when no system is running here."""
    from corral.broker import control_url

    manifest = _manifest()
    return control_url(manifest.parent / ".corral") or corral_status().get("nats_url")


def _manifest() -> Path:
    """The system's manifest: CORRAL_MANIFEST (a chaos experiment's commands get it),
    else the corral.yaml next to this package."""
    if os.environ.get("CORRAL_MANIFEST"):
        return Path(os.environ["CORRAL_MANIFEST"])
    return Path(__file__).resolve().parents[1] / "corral.yaml"


def corral_status() -> dict[str, Any]:
    corral = shutil.which("corral")
    if corral is None:
        return {}
    manifest = _manifest()
    try:
        out = subprocess.run(
            [corral, "status", "--json", "-f", str(manifest)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return dict(json.loads(out.stdout)) if out.returncode == 0 else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


@dataclass
class Timing:
    """Latency samples per step name, in seconds."""

    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, step: str, seconds: float) -> None:
        self.samples.setdefault(step, []).append(seconds)


class ApiError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        try:
            self.problem = response.json()
        except ValueError:
            self.problem = {"detail": response.text[:200]}
        super().__init__(
            f"{response.request.method} {response.request.url.path} -> {self.status}: "
            f"{self.problem.get('title', '')} {self.problem.get('detail', '')}".strip()
        )


class Person:
    """One signed-up user with a token; every call goes through the gateway."""

    def __init__(self, http: httpx.AsyncClient, role: str, timing: Timing | None = None) -> None:
        self.http = http
        self.role = role
        self.email = f"{role}-{uuid.uuid4().hex[:10]}@sim.ridehail.local"
        self.id = ""
        self.token = ""
        self.timing = timing or Timing()

    async def call(
        self,
        method: str,
        path: str,
        *,
        step: str | None = None,
        ok: tuple[int, ...] = (),
        **kw: Any,
    ) -> httpx.Response:
        headers = kw.pop("headers", {})
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        started = time.perf_counter()
        response = await self.http.request(method, path, headers=headers, **kw)
        self.timing.add(step or f"{method} {path.split('?')[0]}", time.perf_counter() - started)
        if response.status_code >= 400 and response.status_code not in ok:
            raise ApiError(response)
        return response

    async def signup(self, name: str | None = None) -> None:
        body = {
            "email": self.email,
            "password": PASSWORD,
            "name": name or self.role,
            "role": self.role,
        }
        self.id = (await self.call("POST", "/auth/signup", step="signup", json=body)).json()["id"]

    async def login(self, password: str = PASSWORD) -> None:
        body = {"email": self.email, "password": password}
        response = await self.call("POST", "/auth/login", step="login", json=body)
        self.token = response.json()["access_token"]

    @classmethod
    async def admin(cls, http: httpx.AsyncClient, email: str, password: str) -> Person:
        person = cls(http, "admin")
        person.email = email
        await person.login(password)
        return person
