"""Calls the manifest does not declare (``calls:`` -> CORRAL_CALLS): a warning, never an error."""

from __future__ import annotations

from typing import Any

import pytest

from corral import contract
from corral.sdk import Service
from corral.sdk.testing import capture_logs, serve_in_process

WARNING = "call to a service the manifest does not declare"


def caller() -> Service[Any]:
    """A service whose /use/{target} takes the client for ``target`` (twice) and returns."""
    svc = Service("rides")

    @svc.get("/use/{target}")
    async def use(target: str) -> dict[str, str]:
        svc.client(target)
        svc.client(target)
        return {"used": target}

    return svc


async def warnings_for(calls: str | None, *targets: str, before_start: str = "") -> list[Any]:
    """The undeclared-call warnings logged while the service uses ``targets`` in turn."""
    svc = caller()
    if before_start:
        svc.client(before_start)  # a module-level client, taken before the service starts
    env = {
        contract.CALLS: calls,
        contract.DISCOVERY: "static",
        contract.service_url_variable("payments"): "http://127.0.0.1:9",
    }
    with capture_logs() as logs:
        async with serve_in_process(svc, env=env) as http:
            for target in targets:
                assert (await http.get(f"/use/{target}")).status_code == 200
    return [line for line in logs if line.get("event") == WARNING]


async def test_one_warning_per_undeclared_target() -> None:
    """Two undeclared targets used twice each: one warning each, naming target and fix."""
    found = await warnings_for("payments", "tracking", "tracking", "fakepay", "payments")
    assert [(w["target"], w["level"]) for w in found] == [
        ("tracking", "warning"),
        ("fakepay", "warning"),
    ]
    assert found[0]["declared"] == ["payments"]
    assert found[0]["hint"] == "add 'tracking' to services.rides.calls in corral.yaml"


async def test_a_client_taken_before_start_is_checked_at_start() -> None:
    """A client created at import time (before settings are read) is checked when the
    service starts."""
    found = await warnings_for("payments", before_start="tracking")
    assert [w["target"] for w in found] == ["tracking"]


@pytest.mark.parametrize(
    ("calls", "targets"),
    [
        (None, ("payments", "tracking")),  # the manifest says nothing: nothing is undeclared
        ("payments,tracking", ("payments", "tracking")),
    ],
    ids=["undeclared", "all-declared"],
)
async def test_no_warning(calls: str | None, targets: tuple[str, ...]) -> None:
    """No warning without CORRAL_CALLS, nor for declared targets."""
    assert await warnings_for(calls, *targets) == []


async def test_calls_empty_declares_none() -> None:
    """CORRAL_CALLS='' (calls: []) makes every target undeclared."""
    found = await warnings_for("", "payments")
    assert [w["target"] for w in found] == ["payments"]
    assert found[0]["declared"] == []
