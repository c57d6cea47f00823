"""The API client hands the CLI typed answers, and an answer it cannot read is a clear
error, not a pydantic traceback (a control plane of another corral version)."""

from __future__ import annotations

from typing import Any

import pytest

from corral.api import ApiClient, ApiError, ConfigClient
from corral.errors import CorralError


def answering(body: Any) -> ApiClient:
    client = ApiClient("http://127.0.0.1:9", "token")
    client._request = lambda method, path, **kwargs: body  # type: ignore[method-assign]
    return client


def test_status_is_parsed_into_its_model() -> None:
    """Fields are attributes, instance records typed (their uptime computed)."""
    status = answering(
        {
            "system": "demo",
            "state": "running",
            "pid": 1,
            "manifest": "/srv/demo/corral.yaml",
            "state_dir": "/srv/demo/.corral",
            "started_at": 1.0,
            "registry_version": 3,
            "services": {"web": {"replicas": 1, "ready": 1, "instances": 1, "component": False}},
            "instances": [
                {
                    "service": "web",
                    "instance": "web-1",
                    "host": "127.0.0.1",
                    "port": 8000,
                    "state": "running",
                    "ready": True,
                    "started_at": 1.0,
                    "address": "ignored: computed",
                }
            ],
            "gateway_url": "http://127.0.0.1:8080",
            "from_an_addon": {"kept": True},
        }
    ).status()
    assert status.services["web"].ready == 1
    [record] = status.user_instances
    assert (record.address, record.serving) == ("127.0.0.1:8000", True)
    assert record.uptime is not None
    assert record.uptime > 0
    assert status.gateway_url == "http://127.0.0.1:8080"
    assert status.model_extra == {"from_an_addon": {"kept": True}}


@pytest.mark.parametrize("call", ["status", "registry", "instances"])
def test_an_answer_of_another_shape_is_an_api_error(call: str) -> None:
    """A body the models cannot read names the request and suggests why."""
    with pytest.raises(ApiError, match="unexpected answer from the control plane") as caught:
        getattr(answering({"system": "demo"}), call)()
    assert isinstance(caught.value, CorralError)
    assert "another corral version" in caught.value.message


def test_chaos_answers_are_parsed_into_their_models() -> None:
    """The CLI reads an experiment's attributes; `chaos list` its active and recent."""
    began = {
        "id": "chaos-2",
        "kind": "pause",
        "target": "web-1",
        "state": "active",
        "detail": "SIGSTOP to process group 42",
        "started_at": 1.0,
        "expires_at": 11.0,
        "remaining": 9.5,
        "seconds": 10.0,
    }
    experiment = answering(began).chaos_pause("web-1", 10.0)
    assert (experiment.id, experiment.remaining, experiment.seconds) == ("chaos-2", 9.5, 10.0)
    overview = answering({"active": [began], "recent": []}).chaos()
    assert [e.target for e in overview.active] == ["web-1"]
    [stopped] = answering({"stopped": [{**began, "state": "stopped"}]}).chaos_stop()
    assert stopped.state == "stopped"


@pytest.mark.parametrize(
    ("call", "body"),
    [
        ("chaos", {"active": [{"id": "chaos-1"}], "recent": []}),
        ("chaos_database", {"id": "chaos-1", "kind": "meteor"}),
        ("chaos_stop", {"stopped": "all of them"}),
    ],
)
def test_a_chaos_answer_of_another_shape_is_an_api_error(call: str, body: Any) -> None:
    """Whatever the call, a body its model cannot read is an ApiError, not a traceback."""
    request = getattr(answering(body), call)
    args = ("store", 1.0) if call == "chaos_database" else ()
    with pytest.raises(ApiError, match="unexpected answer from the control plane"):
        request(*args)


def test_a_config_outcome_is_parsed_and_a_wrong_one_is_an_api_error() -> None:
    """`corral config set` reads the version, changes and rollouts as attributes."""
    outcome = {
        "version": 2,
        "changes": [{"service": "web", "key": "LEVEL", "old": "info", "new": "debug"}],
        "services": {"web": "applied live"},
        "notes": [],
    }
    done = ConfigClient(answering(outcome)).set("web", {"LEVEL": "debug"})
    assert (done.version, done.changes[0].new, done.services) == (
        2,
        "debug",
        {"web": "applied live"},
    )
    wrong = ConfigClient(answering({**outcome, "services": {"web": "teleported"}}))
    with pytest.raises(ApiError, match="unexpected answer from the control plane"):
        wrong.apply()
