"""Test helpers: upstream processes, a real Envoy fed by the renderer, JWT keys."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from corral.gateway import GatewayAddon, Ports, envoy_binary
from corral.manifest import Manifest, parse
from corral.plan import Plan, resolve
from corral.runtime.registry import InstanceRecord, InstanceState, Snapshot
from testkit import free_port, wait_for

HERE = Path(__file__).parent


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Upstream:
    """One upstream process (tests/gateway/upstream.py)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, name: str, *, jwks: Path | None = None, port: int | None = None) -> Upstream:
        port = port or free_port()
        argv = [sys.executable, str(HERE / "upstream.py"), str(port), name]
        if jwks is not None:
            argv.append(str(jwks))
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        upstream = cls(name, port, process)
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/__ready"), what=f"upstream {name}")
        return upstream

    def record(self, service: str, *, ready: bool = True) -> InstanceRecord:
        return InstanceRecord(
            service=service,
            instance=self.name,
            host="127.0.0.1",
            port=self.port,
            state=InstanceState.RUNNING,
            ready=ready,
            pid=self.process.pid,
        )

    def fault(self, fault: str) -> None:
        """``unhealthy`` (its /readyz answers 503), ``failing`` (500 to all else), ``ok``."""
        url = f"http://127.0.0.1:{self.port}/__control/{fault}"
        httpx.post(url, timeout=2.0).raise_for_status()

    def served(self) -> int:
        """Requests this upstream has answered (its /__stats; health checks excluded)."""
        url = f"http://127.0.0.1:{self.port}/__stats"
        return int(httpx.get(url, timeout=2.0).json()["served"])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def snapshot(records: Iterable[InstanceRecord], version: int = 1) -> Snapshot:
    return Snapshot(version, tuple(sorted(records, key=lambda r: (r.service, r.instance))))


def manifest_from(text: str, folder: Path) -> tuple[Manifest, Plan]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corral.yaml"
    path.write_text(text)
    manifest = parse(text, path)
    return manifest, resolve(manifest, python=sys.executable)


@dataclass
class Gateway:
    """A real Envoy started from the renderer's files, with its addon for live changes."""

    addon: GatewayAddon
    process: subprocess.Popen[bytes]
    ports: Ports
    log: Path
    plan: Plan
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.listener}"

    @property
    def admin_socket(self) -> str:
        assert self.addon.status(), "the addon has prepared this gateway"
        return str(self.addon.status()["gateway_admin_socket"])

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.stats}"

    def admin_get(self, path: str) -> httpx.Response:
        """GET on Envoy's admin API, through its Unix socket."""
        transport = httpx.HTTPTransport(uds=self.admin_socket)
        with httpx.Client(transport=transport, timeout=2) as client:
            return client.get("http://envoy-admin" + path)

    def endpoints(self) -> dict[str, set[str]]:
        from corral.gateway._admin import parse_clusters

        return parse_clusters(self.admin_get("/clusters?format=json").json())

    def wait_endpoints(self, expected: Mapping[str, set[str]], timeout: float = 10.0) -> None:
        wait_for(
            lambda: all(self.endpoints().get(k, set()) == v for k, v in expected.items()),
            timeout=timeout,
            what=f"endpoints {expected}",
        )

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_gateway(
    text: str, folder: Path, records: Iterable[InstanceRecord], *, workers: int = 1
) -> Gateway:
    """Render ``text``'s gateway for ``records``, start Envoy, wait until it serves them."""
    _, plan = manifest_from(text, folder)
    assert plan.gateway is not None
    snap = snapshot(records)
    addon = GatewayAddon()
    ports = Ports(listener=plan.gateway.port or free_port(), stats=free_port())
    bootstrap = addon.prepare(plan.gateway, snap, directory=folder / "gw", ports=ports)
    log = folder / "envoy.log"
    process = subprocess.Popen(
        [
            envoy_binary(),
            "-c",
            str(bootstrap),
            "--disable-hot-restart",
            "--concurrency",
            str(workers),
            "-l",
            "warn",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    gateway = Gateway(addon, process, ports, log, plan)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError("envoy exited:\n" + log.read_text()[-3000:])
            return _answers(gateway.stats_url + "/ready")

        wait_for(ready, what="envoy /ready")
        expected: dict[str, set[str]] = {c.name: set() for c in plan.gateway.clusters}
        for record in snap.instances:
            if record.serving and record.service in expected:
                expected[record.service].add(record.address)
        gateway.wait_endpoints(expected)
    except BaseException:
        gateway.stop()
        raise
    return gateway


# --- JWT ---------------------------------------------------------------------------------


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class KeyPair:
    kid: str
    private: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, kid: str) -> KeyPair:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": _b64(numbers.n),
            "e": _b64(numbers.e),
        }

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": kid or self.kid})


def write_jwks(path: Path, keys: Iterable[KeyPair]) -> Path:
    """Write a JWKS file atomically, so a server reading it never sees half a file."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"keys": [k.jwk() for k in keys]}))
    temporary.replace(path)
    return path
