"""The configuration endpoints of the control-plane API: who may call what, and every
refusal as problem+json (against a real ConfigControl on an in-memory runtime)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from config_helpers import Decide, applied, rejects_debug, running

from corral.api import create_app
from corral.config import ConfigControl
from corral.runtime.registry import Registry

ADMIN = "admin-token"
DISCOVERY = "discovery-token"


class Target:
    """The slice of a running system the API needs, with live configuration."""

    def __init__(self, control: ConfigControl, registry: Registry) -> None:
        self.config = control
        self.registry = registry

    def has_service(self, service: str) -> bool:
        return service in ("web", "api")

    def status(self) -> dict[str, Any]:
        return {}


@contextlib.asynccontextmanager
async def api_for(tmp_path: Path, decide: Decide) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The API app over a running ConfigControl whose instances answer with ``decide``."""
    async with running(tmp_path, decide) as (control, runtime, _):

        async def shutdown() -> None:
            return None

        app = create_app(
            Target(control, runtime.registry),  # type: ignore[arg-type]
            admin_token=ADMIN,
            discovery_token=DISCOVERY,
            request_shutdown=shutdown,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http, control


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with api_for(tmp_path, applied) as found:
        yield found


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_people_need_the_admin_token(api: Any) -> None:
    """Reading and changing configuration take the admin token; the discovery token and
    a service's own token are refused."""
    http, control = api
    token = control.token_for("web")
    for credentials in ({}, auth(DISCOVERY), auth(token)):
        response = await http.get("/v1/config", headers=credentials)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        change = await http.post(
            "/v1/config/services/web/set", json={"values": {"A": "1"}}, headers=credentials
        )
        assert change.status_code == 401
    assert (await http.get("/v1/config", headers=auth(ADMIN))).status_code == 200


async def test_instances_report_only_for_their_own_service(api: Any) -> None:
    """A service's token reports for its instances; another's, or an unknown instance,
    gets 401; a malformed report 422."""
    http, control = api
    report = {"version": 1, "outcome": "applied"}
    path = "/v1/config/instances/{}/reports"
    web = auth(control.token_for("web"))
    assert (await http.post(path.format("web-1"), json=report, headers=web)).status_code == 200
    other = auth(control.token_for("api"))
    assert (await http.post(path.format("web-1"), json=report, headers=other)).status_code == 401
    assert (await http.post(path.format("web-9"), json=report, headers=web)).status_code == 401
    bad = await http.post(path.format("web-1"), json={"version": 1, "outcome": "?"}, headers=web)
    assert bad.status_code == 422


CHANGES = [
    # (what, method, path, body, status, title)
    ("unknown service", "GET", "/v1/config?service=shop", None, 404, "unknown service"),
    ("unknown version", "GET", "/v1/config?version=9", None, 404, "unknown version"),
    ("diff of an unknown version", "GET", "/v1/config/diff?a=1&b=9", None, 404, "unknown version"),
    (
        "a secret set at run time",
        "POST",
        "/v1/config/services/web/set",
        {"values": {"API_KEY": "x"}},
        422,
        "invalid change",
    ),
    (
        "a stale version",
        "POST",
        "/v1/config/services/web/set",
        {"values": {"LEVEL": "1"}, "if_version": 0},
        409,
        "version conflict",
    ),
    ("rollback to nothing", "POST", "/v1/config/rollback", {"version": 9}, 404, "invalid change"),
    (
        "unset of a manifest value",
        "POST",
        "/v1/config/services/web/unset",
        {"keys": ["LEVEL"]},
        422,
        "invalid change",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "title"),
    [c[1:] for c in CHANGES],
    ids=[c[0] for c in CHANGES],
)
async def test_refusals_are_problems(
    api: Any, method: str, path: str, body: dict[str, Any] | None, status: int, title: str
) -> None:
    """Each mistake gets its status and a problem+json title; nothing is written."""
    http, control = api
    response = await http.request(method, path, json=body, headers=auth(ADMIN))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == title
    assert control.current.version == 1


async def test_a_change_answers_its_outcome(api: Any) -> None:
    """set answers the version, its changes and how each service took it; the history
    records the author and message."""
    http, _ = api
    body = {"values": {"LEVEL": "debug"}, "author": "ada", "message": "why"}
    response = await http.post("/v1/config/services/web/set", json=body, headers=auth(ADMIN))
    assert response.status_code == 200
    assert response.json() == {
        "version": 2,
        "changes": [{"service": "web", "key": "LEVEL", "old": "info", "new": "debug"}],
        "services": {"web": "applied live"},
        "notes": [],
    }
    history = (await http.get("/v1/config/history?service=web", headers=auth(ADMIN))).json()
    assert [(v["version"], v["author"], v["message"]) for v in history] == [
        (1, "ada", "corral up"),
        (2, "ada", "why"),
    ]


async def test_openapi_declares_the_outcome_of_a_change(api: Any) -> None:
    """Every change (set, unset, rollback, apply) answers the declared ConfigOutcome."""
    http, _ = api
    spec = (await http.get("/openapi.json")).json()
    assert "ConfigOutcome" in spec["components"]["schemas"]
    for path in ("services/{service}/set", "services/{service}/unset", "rollback", "apply"):
        content = spec["paths"][f"/v1/config/{path}"]["post"]["responses"]["200"]["content"]
        assert content["application/json"]["schema"]["$ref"].endswith("/ConfigOutcome")


async def test_a_rejected_change_answers_why_and_what_restored_it(tmp_path: Path) -> None:
    """A rejection is 422 with the service's problems and the restoring version."""
    async with api_for(tmp_path, rejects_debug) as (http, control):
        body = {"values": {"LEVEL": "debug"}}
        response = await http.post("/v1/config/services/web/set", json=body, headers=auth(ADMIN))
    assert response.status_code == 422
    problem = response.json()
    assert (problem["title"], problem["version"], problem["restored_version"]) == (
        "configuration rejected",
        2,
        3,
    )
    assert "LEVEL: bad" in problem["problems"][0]
    assert "web refused configuration version 2" in problem["detail"]
    assert control.current.kind == "restore"


async def test_a_misspelled_setting_is_a_422_naming_the_closest(api: Any) -> None:
    """The refusal carries the detail a CLI prints as is, and the declared settings and
    suggestions as fields; new=true adds the variable anyway."""
    http, control = api
    body = {"values": {"LEVLE": "debug"}}
    response = await http.post("/v1/config/services/web/set", json=body, headers=auth(ADMIN))
    assert response.status_code == 422
    problem = response.json()
    assert problem["title"] == "unknown setting"
    assert "did you mean LEVEL?" in problem["detail"]
    assert problem["suggestions"] == {"LEVLE": ["LEVEL"]}
    assert "WORKERS" in problem["declared"]
    assert control.current.version == 1
    forced = await http.post(
        "/v1/config/services/web/set", json={**body, "new": True}, headers=auth(ADMIN)
    )
    assert forced.status_code == 200


async def test_reads_answer_declared_models_with_the_same_json(api: Any) -> None:
    """show, history and diff are declared in the OpenAPI; diff still says ``from``."""
    http, _ = api
    await http.post(
        "/v1/config/services/web/set", json={"values": {"LEVEL": "debug"}}, headers=auth(ADMIN)
    )
    spec = (await http.get("/openapi.json")).json()
    for path, model in (
        ("", "ConfigShown"),
        ("/diff", "ConfigDiff"),
        ("/instances", "ConfigInstance"),
    ):
        schema = spec["paths"][f"/v1/config{path}"]["get"]["responses"]["200"]["content"]
        assert model in str(schema["application/json"]["schema"]), schema
    diff = (await http.get("/v1/config/diff?a=1&b=2", headers=auth(ADMIN))).json()
    assert diff == {
        "from": 1,
        "to": 2,
        "changes": [{"service": "web", "key": "LEVEL", "old": "info", "new": "debug"}],
    }
    shown = (await http.get("/v1/config?service=web", headers=auth(ADMIN))).json()
    assert shown["services"]["web"]["LEVEL"]["value"] == "debug"
    assert set(shown) == {"version", "time", "author", "kind", "message", "environment", "services"}


async def test_each_instance_reports_its_version_and_propagation_latency(api: Any) -> None:
    """After a live change, every instance of the service shows the new version, applied,
    with a latency measured from publication to its report."""
    http, _ = api
    response = await http.post(
        "/v1/config/services/web/set", json={"values": {"LEVEL": "debug"}}, headers=auth(ADMIN)
    )
    assert response.json()["services"] == {"web": "applied live"}
    found = (await http.get("/v1/config/instances", headers=auth(ADMIN))).json()
    web = [i for i in found if i["service"] == "web"]
    assert web, found
    for entry in web:
        assert entry["version"] == 2, entry
        assert entry["outcome"] == "applied"
        assert entry["current"] is True
        assert entry["latency"] is not None
        assert entry["latency"] >= 0
