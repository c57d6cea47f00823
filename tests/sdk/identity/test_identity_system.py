"""Identity across a real system: services as processes with the environment the plan
gives them, keys fetched from a service through discovery, a real Envoy in front.

Issue 12.3: a request straight to a service's port with a forged
``x-corral-claim-role: admin`` was served as an admin's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from identity_keys import AUDIENCE, ISSUER, SigningKey, valid_claims
from sdk_helpers import APPS, ServedProcess, free_port, wait_for

from corral import contract
from corral.gateway import GatewayAddon, Ports, envoy_binary
from corral.manifest import parse
from corral.plan import Endpoints, Plan, instance_environment, resolve
from corral.runtime.registry import InstanceRecord, InstanceState, Snapshot

pytestmark = pytest.mark.integration

KEY = SigningKey.rsa("k1")
MANIFEST = f"""
name: idsys
services:
  auth: {{app: "identity_system:auth"}}
  rides: {{app: "identity_system:rides", calls: [tracking]}}
  tracking: {{app: "identity_system:tracking"}}
gateway:
  jwt:
    main:
      issuer: {ISSUER}
      audiences: [{AUDIENCE}]
      jwks: {{service: auth, path: /.well-known/jwks.json, cache: 30s}}
      forward_claims: [sub, role]
  routes:
    - match: {{prefix: /rides}}
      service: rides
      auth: {{roles: [rider, admin]}}
"""
FORGED = {"x-corral-claim-sub": "rider-1", "x-corral-claim-role": "admin"}


def token(sub: str, role: str) -> dict[str, str]:
    claims = valid_claims(sub=sub, role=role, roles=[role])
    return {"authorization": f"Bearer {KEY.token(claims)}"}


@dataclass
class System:
    plan: Plan
    services: dict[str, ServedProcess]

    def url(self, service: str) -> str:
        return self.services[service].base_url


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    folder = tmp_path_factory.mktemp("idsys")
    (folder / "corral.yaml").write_text(MANIFEST)
    plan = resolve(parse(MANIFEST, folder / "corral.yaml"), python=sys.executable)
    jwks = folder / "jwks.json"
    jwks.write_text(json.dumps({"keys": [KEY.jwk()]}))
    started: dict[str, ServedProcess] = {}
    try:
        # In the order they call each other, each on a port chosen just before it starts
        # (other tests pick ports too), told the URLs of those started before it.
        for name in ("auth", "tracking", "rides"):
            service, port = plan.services[name], free_port()
            urls = {other: served.base_url for other, served in started.items()}
            env = instance_environment(
                plan,
                service,
                instance=f"{name}-1",
                port=port,
                endpoints=Endpoints(service_urls=urls),  # static discovery
                database_url=None,
            )
            env["TEST_JWKS_FILE"] = str(jwks)
            started[name] = ServedProcess(
                service.app or "", APPS, env, folder / f"{name}.log", port=port
            )
            started[name].wait_ready()
        yield System(plan, started)
    finally:
        for served in started.values():
            served.stop()


def test_the_plan_hands_the_services_what_they_verify_with(system: System) -> None:
    """Each service's CORRAL_IDENTITY names the gateway's provider and its keys'
    service (what the rest of this file relies on)."""
    env = instance_environment(
        system.plan,
        system.plan.services["tracking"],
        instance="t",
        port=1,
        endpoints=Endpoints(),
        database_url=None,
    )
    (provider,) = json.loads(env[contract.IDENTITY])["providers"]
    assert (provider["issuer"], provider["jwks"]["service"]) == (ISSUER, "auth")


def test_a_forged_admin_header_straight_to_the_port_is_not_an_admin(system: System) -> None:
    """Issue 12.3's attack: no token, forged claim headers, straight to rides' port: the
    headers are dropped before the handler reads them (401), where the old SDK answered
    200 with every ride."""
    answer = httpx.get(system.url("rides") + "/rides", headers=FORGED, timeout=10)
    assert answer.status_code == 401, answer.text


def test_a_token_straight_to_the_port_proves_its_own_claims_only(system: System) -> None:
    """A rider's valid token with a forged role header: the handler reads the token's
    role, not the forged one (its own ride only)."""
    answer = httpx.get(
        system.url("rides") + "/rides", headers={**FORGED, **token("rider-1", "rider")}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert [ride["id"] for ride in answer.json()] == ["r1"]


def test_service_to_service_calls_keep_the_callers_identity(system: System) -> None:
    """rides calls tracking through svc.client: tracking verifies the forwarded token
    itself and sees the original caller; without a token tracking sees nobody."""
    url = system.url("rides") + "/rides/r1/distance"
    seen = httpx.get(url, headers=token("rider-1", "rider"), timeout=10).json()
    assert seen == {"ride": "r1", "caller": "rider-1", "role": "rider"}
    nobody = httpx.get(url, headers=FORGED, timeout=10).json()
    assert nobody["status"] == 401


# --- through the gateway -------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert system.plan.gateway is not None
    folder = tmp_path_factory.mktemp("gw")
    records = tuple(
        InstanceRecord(
            service=name,
            instance=f"{name}-1",
            host="127.0.0.1",
            port=served.port,
            state=InstanceState.RUNNING,
            ready=True,
            pid=served.proc.pid,
        )
        for name, served in sorted(system.services.items())
    )
    ports = Ports(listener=free_port(), stats=free_port())
    bootstrap = GatewayAddon().prepare(
        system.plan.gateway, Snapshot(1, records), directory=folder, ports=ports
    )
    log = folder / "envoy.log"
    with log.open("wb") as out:
        envoy = subprocess.Popen(
            [envoy_binary(), "-c", str(bootstrap), "--disable-hot-restart", "-l", "warn"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{ports.listener}"
    try:

        def serving() -> bool:
            if envoy.poll() is not None:
                raise AssertionError("envoy exited:\n" + log.read_text()[-3000:])
            try:
                answer = httpx.get(url + "/rides", headers=token("rider-1", "rider"), timeout=2)
            except httpx.HTTPError:
                return False
            return answer.status_code == 200

        wait_for(serving, timeout=20, what="the gateway to serve /rides")
        yield url
    finally:
        envoy.terminate()
        envoy.wait(10)


def test_through_the_gateway_services_see_the_verified_caller(gateway: str) -> None:
    """Through Envoy: a rider sees their own ride, an admin every ride; a forged header
    without a token is refused at the gateway."""
    rider = httpx.get(gateway + "/rides", headers={**FORGED, **token("rider-1", "rider")})
    admin = httpx.get(gateway + "/rides", headers=token("admin-1", "admin"))
    forged = httpx.get(gateway + "/rides", headers=FORGED)
    assert [r["id"] for r in rider.json()] == ["r1"]
    assert [r["id"] for r in admin.json()] == ["r1", "r2"]
    assert forged.status_code == 401
