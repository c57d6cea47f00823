"""Instances and their environment, following the runtime contract (corral.contract)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from corral import contract
from corral.manifest import parse
from corral.plan import Endpoints, Plan, instance_environment, instance_id, resolve


def plan(env: str = "{}", grace: str = "10s") -> Plan:
    """A two-service system whose ``web`` has the given env and stop grace period."""
    text = (
        "name: shop\nservices:\n"
        f"  web:\n    command: x\n    env: {env}\n    stop_grace_period: {grace}\n"
        "  ride-matching:\n    command: x\n"
    )
    return resolve(parse(text, Path("/srv/shop/corral.yaml")), python="python3")


def environment(
    resolved: Plan, *, endpoints: Endpoints | None = None, database_url: str | None = None
) -> dict[str, str]:
    return instance_environment(
        resolved,
        resolved.services["web"],
        instance="web-2",
        port=41234,
        endpoints=endpoints or Endpoints(),
        database_url=database_url,
    )


@pytest.mark.parametrize(
    ("service", "ordinal", "expected"),
    [("web", 1, "web-1"), ("web", 12, "web-12"), ("ride-matching", 3, "ride-matching-3")],
)
def test_instance_id(service: str, ordinal: int, expected: str) -> None:
    """Instance ids are <service>-<ordinal>."""
    assert instance_id(service, ordinal) == expected


def test_minimal_environment() -> None:
    """With no endpoints, an instance gets exactly the contract's always-present variables."""
    assert environment(plan()) == {
        contract.SYSTEM: "shop",
        contract.SERVICE: "web",
        contract.INSTANCE: "web-2",
        contract.HOST: "127.0.0.1",
        contract.PORT: "41234",
        contract.GRACE_PERIOD: "10",
        contract.LOG_FORMAT: "json",
        contract.OTEL_SERVICE_NAME: "web",
        "PYTHONUNBUFFERED": "1",
    }


FULL = Endpoints(
    host="0.0.0.0",
    nats_url="nats://127.0.0.1:4222",
    discovery="registry+http://127.0.0.1:7000",
    discovery_token="secret-token",
    otel_endpoint="http://127.0.0.1:4318",
    service_urls={"ride-matching": "http://127.0.0.1:9001", "web": "http://127.0.0.1:9000"},
    extra={contract.EVENTS: '{"topics": {}}'},
)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        (contract.HOST, "0.0.0.0"),
        (contract.NATS_URL, "nats://127.0.0.1:4222"),
        (contract.DISCOVERY, "registry+http://127.0.0.1:7000"),
        (contract.DISCOVERY_TOKEN, "secret-token"),
        (contract.OTEL_ENDPOINT, "http://127.0.0.1:4318"),
        (contract.DATABASE_URL, "sqlite+aiosqlite:////srv/shop/.corral/data/web.sqlite3"),
        ("CORRAL_URL_RIDE_MATCHING", "http://127.0.0.1:9001"),
        ("CORRAL_URL_WEB", "http://127.0.0.1:9000"),
        (contract.EVENTS, '{"topics": {}}'),
    ],
)
def test_endpoints_become_contract_variables(variable: str, value: str) -> None:
    """Each known endpoint reaches the instance under its contract name."""
    env = environment(
        plan(),
        endpoints=FULL,
        database_url="sqlite+aiosqlite:////srv/shop/.corral/data/web.sqlite3",
    )
    assert env[variable] == value


@pytest.mark.parametrize(
    ("service", "variable"),
    [
        ("web", "CORRAL_URL_WEB"),
        ("ride-matching", "CORRAL_URL_RIDE_MATCHING"),
        ("a-b-c", "CORRAL_URL_A_B_C"),
    ],
)
def test_service_url_variable_naming(service: str, variable: str) -> None:
    """CORRAL_URL_<SERVICE> is the name upper-cased with '-' as '_'."""
    assert contract.service_url_variable(service) == variable


def test_manifest_env_is_kept() -> None:
    """The manifest's own variables reach the instance unchanged."""
    env = environment(plan("{FEATURE_X: 'on', WORKERS: 4}"))
    assert (env["FEATURE_X"], env["WORKERS"]) == ("on", "4")


@pytest.mark.parametrize(
    ("variable", "manifest_value"),
    [
        (contract.DATABASE_URL, "postgresql://elsewhere/web"),
        (contract.NATS_URL, "nats://broker:4222"),
        (contract.OTEL_ENDPOINT, "http://collector:4318"),
        (contract.OTEL_SERVICE_NAME, "web-frontend"),
        (contract.LOG_FORMAT, "console"),
        ("CORRAL_URL_RIDE_MATCHING", "http://matching.internal"),
    ],
)
def test_manifest_may_point_shared_endpoints_elsewhere(variable: str, manifest_value: str) -> None:
    """DATABASE_URL, NATS_URL, OTEL_*, the log format and service URLs may be overridden."""
    env = environment(
        plan(f"{{{variable}: '{manifest_value}'}}"),
        endpoints=FULL,
        database_url="sqlite+aiosqlite:///x.sqlite3",
    )
    assert env[variable] == manifest_value


def test_reserved_variables_owned_by_corral_win() -> None:
    """Even if a manifest somehow sets a reserved variable, Corral's per-instance value wins."""
    resolved = plan()
    service = resolved.services["web"]
    forced = {name: "from-manifest" for name in contract.RESERVED}
    service = dataclasses.replace(service, env=forced)
    env = instance_environment(
        resolved, service, instance="web-2", port=41234, endpoints=FULL, database_url=None
    )
    # The live-configuration variables are the config addon's to give, never the manifest's.
    assert not set(contract.CONFIG_VARIABLES) & set(env)
    owned = contract.RESERVED - set(contract.CONFIG_VARIABLES)
    assert {name: env[name] for name in owned} == {
        contract.SYSTEM: "shop",
        contract.SERVICE: "web",
        contract.INSTANCE: "web-2",
        contract.HOST: "0.0.0.0",
        contract.PORT: "41234",
        contract.GRACE_PERIOD: "10",
        contract.DISCOVERY: "registry+http://127.0.0.1:7000",
        contract.DISCOVERY_TOKEN: "secret-token",
    }


@pytest.mark.parametrize(("grace", "text"), [("10s", "10"), ("1500ms", "1.5"), ("2m", "120")])
def test_grace_period_in_seconds(grace: str, text: str) -> None:
    """The stop grace period is given in seconds, without a trailing '.0'."""
    assert environment(plan(grace=grace))[contract.GRACE_PERIOD] == text


def test_absent_endpoints_are_absent() -> None:
    """Variables for endpoints that do not exist are left out, not set to empty strings."""
    env = environment(plan())
    for variable in (
        contract.DATABASE_URL,
        contract.NATS_URL,
        contract.DISCOVERY,
        contract.DISCOVERY_TOKEN,
        contract.OTEL_ENDPOINT,
    ):
        assert variable not in env
    assert not any(name.startswith(contract.SERVICE_URL_PREFIX) for name in env)


def test_every_value_is_a_string() -> None:
    """The environment is ready for a process: every name and value is a string."""
    env = environment(plan("{A: '1'}"), endpoints=FULL, database_url="sqlite:///x")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        ("[ride-matching]", "ride-matching"),
        ("[ride-matching, web]", "ride-matching,web"),
        ("[]", ""),
    ],
)
def test_declared_calls_reach_the_instance(calls: str, expected: str) -> None:
    """A service's calls: become CORRAL_CALLS, comma-separated (empty: it calls nobody)."""
    text = (
        f"name: shop\nservices:\n  web:\n    command: x\n    calls: {calls}\n"
        "  ride-matching:\n    command: x\n"
    )
    resolved = resolve(parse(text, Path("/srv/shop/corral.yaml")), python="python3")
    assert environment(resolved)[contract.CALLS] == expected


def test_undeclared_calls_set_no_variable() -> None:
    """Without calls: the variable is absent, so the SDK treats no call as undeclared."""
    assert contract.CALLS not in environment(plan())


def test_resilience_policies_reach_the_calling_service() -> None:
    """A resilience section becomes CORRAL_RESILIENCE (JSON) in each caller's environment."""
    import json

    text = (
        "name: shop\nservices:\n  web:\n    command: x\n  payments:\n    command: x\n"
        "resilience:\n  services:\n    payments:\n      timeout: 3s\n"
    )
    resolved = resolve(parse(text, Path("/srv/shop/corral.yaml")), python="python3")
    env = environment(resolved)
    document = json.loads(env[contract.RESILIENCE])
    assert "payments" in json.dumps(document)
    assert "3" in json.dumps(document)


def test_no_resilience_section_means_no_variable() -> None:
    """Without a resilience section the SDK's defaults apply and nothing is set."""
    assert contract.RESILIENCE not in environment(plan())


GATEWAY = """
gateway:
  jwt:
    main:
      issuer: https://auth.shop.test
      audiences: [shop, admin]
      jwks: {service: ride-matching, path: /keys, cache: 45s}
      forward_claims: [email]
      roles_claim: groups
      clock_skew: 5s
    partners:
      issuer: https://partners.test
      audiences: [shop]
      jwks: {file: keys/partners.json}
  routes:
    - match: {prefix: /}
      service: web
      auth: {jwt: main}
"""


def test_every_service_gets_the_gateway_providers_to_verify_tokens() -> None:
    """CORRAL_IDENTITY carries each JWT provider of the gateway, with the gateway's own
    pins (issuer, audiences, algorithms, clock skew) and where its keys are; every
    service gets it (a token forwarded by one service is verified by the next)."""
    text = (
        "name: shop\nservices:\n  web:\n    command: x\n  ride-matching:\n    command: x\n"
        + GATEWAY
    )
    resolved = resolve(parse(text, Path("/srv/shop/corral.yaml")), python="python3")
    for service in resolved.services.values():
        env = instance_environment(
            resolved, service, instance="x-1", port=1, endpoints=Endpoints(), database_url=None
        )
        assert json.loads(env[contract.IDENTITY]) == {
            "providers": [
                {
                    "name": "main",
                    "issuer": "https://auth.shop.test",
                    "audiences": ["admin", "shop"],
                    "algorithms": list(contract.JWT_ALGORITHMS),
                    "jwks": {"service": "ride-matching", "path": "/keys"},
                    "cache_s": 45.0,
                    "clock_skew_s": 5.0,
                    "forward_claims": ["email", "sub"],
                    "roles_claim": "groups",
                },
                {
                    "name": "partners",
                    "issuer": "https://partners.test",
                    "audiences": ["shop"],
                    "algorithms": list(contract.JWT_ALGORITHMS),
                    "jwks": {"file": "keys/partners.json"},
                    "cache_s": 30.0,
                    "clock_skew_s": 30.0,
                    "forward_claims": ["sub"],
                    "roles_claim": "roles",
                },
            ]
        }


def test_no_identity_without_jwt_providers() -> None:
    """Without gateway JWT providers there is nothing to verify: no CORRAL_IDENTITY (the
    services then trust no claim at all), unless the manifest's env sets one itself."""
    assert contract.IDENTITY not in environment(plan())
    own = '{"providers": []}'
    assert environment(plan(f"{{{contract.IDENTITY}: '{own}'}}"))[contract.IDENTITY] == own


@pytest.mark.parametrize(
    ("workdir", "jwks", "expected"),
    [
        ("api", "keys/jwks.json", "../keys/jwks.json"),
        (".", "keys/jwks.json", "keys/jwks.json"),
        ("api", "/etc/shop/jwks.json", "/etc/shop/jwks.json"),
    ],
)
def test_a_jwks_file_is_named_from_the_service_working_directory(
    workdir: str, jwks: str, expected: str
) -> None:
    """A key file in the system's folder is named relative to the service's working
    directory, which is the same under corral up and in an exported image (it copies the
    folder); a file outside the folder keeps its absolute path."""
    text = f"""
name: shop
services:
  web: {{command: x, workdir: {workdir}}}
gateway:
  jwt:
    main: {{issuer: i, audiences: [a], jwks: {{file: {jwks}}}}}
  routes:
    - {{match: {{prefix: /}}, service: web}}
"""
    resolved = resolve(parse(text, Path("/srv/shop/corral.yaml")), python="python3")
    env = environment(resolved)
    (provider,) = json.loads(env[contract.IDENTITY])["providers"]
    assert provider["jwks"] == {"file": expected}
